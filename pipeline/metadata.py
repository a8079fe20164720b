"""Reads what a local run did from its ML Metadata store: states, timings, outputs."""
from __future__ import annotations

import dataclasses
import pathlib

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

STATE_NAMES = {v: k for k, v in metadata_store_pb2.Execution.State.items()}


@dataclasses.dataclass(frozen=True)
class ComponentRun:
    """One component's execution in a run."""

    component: str
    state: str            # COMPLETE, CACHED, FAILED, ...
    seconds: float
    outputs: dict[str, list[metadata_store_pb2.Artifact]]


def open_store(path: pathlib.Path) -> mlmd.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(config)


def _component_id(store: mlmd.MetadataStore, execution: metadata_store_pb2.Execution) -> str:
    node_type = store.get_context_type("node").id
    for context in store.get_contexts_by_execution(execution.id):
        if context.type_id == node_type:
            return context.name.split(".", 1)[-1]
    return "?"


def _outputs(store: mlmd.MetadataStore, execution_id: int) -> dict[str, list[metadata_store_pb2.Artifact]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs: dict[str, list[metadata_store_pb2.Artifact]] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else "?"
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
    return outputs


def latest_run(store: mlmd.MetadataStore) -> list[ComponentRun]:
    """The newest pipeline run's components in execution order."""
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        return []
    newest = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    executions = sorted(store.get_executions_by_context(newest.id), key=lambda e: (e.create_time_since_epoch, e.id))
    return [ComponentRun(_component_id(store, e), STATE_NAMES.get(e.last_known_state, "UNKNOWN"),
                         (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0,
                         _outputs(store, e.id))
            for e in executions]


def custom_property(artifact: metadata_store_pb2.Artifact, name: str):
    value = artifact.custom_properties.get(name)
    if value is None:
        return None
    return getattr(value, value.WhichOneof("value"))
