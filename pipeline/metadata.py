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
    started: float = 0.0  # seconds since the epoch
    inputs: dict[str, list[metadata_store_pb2.Artifact]] = dataclasses.field(default_factory=dict)
    execution: metadata_store_pb2.Execution | None = None  # its properties: configuration, error message


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """One `run` of a pipeline: its id (the pipeline_run context's name) and start time."""

    run_id: str
    started: float        # seconds since the epoch
    context_id: int


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


_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)


def _outputs(store: mlmd.MetadataStore, execution_id: int,
             event_types=_OUTPUT_EVENTS) -> dict[str, list[metadata_store_pb2.Artifact]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id]) if e.type in event_types]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs: dict[str, list[metadata_store_pb2.Artifact]] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else "?"
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
    return outputs


def pipeline_runs(store: mlmd.MetadataStore) -> list[PipelineRun]:
    """Every run recorded in the store, oldest first."""
    runs = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: (c.create_time_since_epoch, c.id))
    return [PipelineRun(c.name, c.create_time_since_epoch / 1000.0, c.id) for c in runs]


def find_run(store: mlmd.MetadataStore, run_id: str | None = None) -> PipelineRun | None:
    """The run with this id (None: the newest), or None when the store has no such run."""
    runs = pipeline_runs(store)
    if run_id is None:
        return runs[-1] if runs else None
    return next((r for r in runs if r.run_id == run_id), None)


def run_components(store: mlmd.MetadataStore, run: PipelineRun) -> list[ComponentRun]:
    """A run's components in execution order, with their inputs, outputs and execution record."""
    executions = sorted(store.get_executions_by_context(run.context_id),
                        key=lambda e: (e.create_time_since_epoch, e.id))
    return [ComponentRun(_component_id(store, e), STATE_NAMES.get(e.last_known_state, "UNKNOWN"),
                         (e.last_update_time_since_epoch - e.create_time_since_epoch) / 1000.0,
                         _outputs(store, e.id), e.create_time_since_epoch / 1000.0,
                         _outputs(store, e.id, _INPUT_EVENTS), e)
            for e in executions]


def latest_run(store: mlmd.MetadataStore) -> list[ComponentRun]:
    """The newest pipeline run's components in execution order."""
    newest = find_run(store)
    return run_components(store, newest) if newest else []


def custom_property(artifact: metadata_store_pb2.Artifact, name: str):
    value = artifact.custom_properties.get(name)
    if value is None:
        return None
    return getattr(value, value.WhichOneof("value"))


def execution_error(execution: metadata_store_pb2.Execution | None) -> str | None:
    """The failure message TFX recorded on a failed execution, if any."""
    from tfx.orchestration.portable.mlmd import execution_lib
    result = execution_lib.get_execution_result(execution, ignore_parse_errors=True) if execution else None
    return result.result_message if result and result.result_message else None
