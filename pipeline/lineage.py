"""Lineage questions answered from ML Metadata: which data a served model was trained on.

A pushed version is found by its PushedModel artifact; walking the events
upstream (artifact <- producing execution <- its inputs) reaches the raw Examples
that ExampleGen wrote, and the statistics StatisticsGen computed over them.
"""
from __future__ import annotations

import collections
import os

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from pipeline.metadata import custom_property

Artifact = metadata_store_pb2.Artifact
Event = metadata_store_pb2.Event
_INPUTS = (Event.INPUT, Event.DECLARED_INPUT)
_OUTPUTS = (Event.OUTPUT, Event.DECLARED_OUTPUT)
STATISTICS_KEY = "statistics"  # StatisticsGen's output


class LineageError(LookupError):
    """ML Metadata does not connect the artefacts asked about; the message says what is missing."""


def _type_name(store: mlmd.MetadataStore, artifact: Artifact) -> str:
    return store.get_artifact_types_by_id([artifact.type_id])[0].name


def pushed_model(store: mlmd.MetadataStore, version_dir: str) -> Artifact:
    """The newest PushedModel artifact that records a push to (or a de-duplicated reuse of) `version_dir`."""
    wanted = os.path.normpath(version_dir)
    pushed = [a for a in store.get_artifacts_by_type("PushedModel")
              if custom_property(a, "pushed") and custom_property(a, "pushed_destination")
              and os.path.normpath(str(custom_property(a, "pushed_destination"))) == wanted]
    if not pushed:
        raise LineageError(f"no pipeline run in this ML Metadata store pushed {version_dir}; "
                           "give the --home the model was trained with")
    return max(pushed, key=lambda a: (a.create_time_since_epoch, a.id))


def run_of(store: mlmd.MetadataStore, artifact: Artifact) -> str | None:
    """The id of the pipeline run whose component produced `artifact`."""
    producers = [e.execution_id for e in store.get_events_by_artifact_ids([artifact.id]) if e.type in _OUTPUTS]
    run_type = store.get_context_type("pipeline_run").id
    for execution_id in producers:
        for context in store.get_contexts_by_execution(execution_id):
            if context.type_id == run_type:
                return context.name
    return None


def upstream(store: mlmd.MetadataStore, artifact: Artifact) -> list[Artifact]:
    """Every artifact `artifact` was derived from, nearest first."""
    seen, found = {artifact.id}, []
    queue = collections.deque([artifact.id])
    while queue:
        current = queue.popleft()
        producers = [e.execution_id for e in store.get_events_by_artifact_ids([current]) if e.type in _OUTPUTS]
        if not producers:
            continue
        inputs = [e.artifact_id for e in store.get_events_by_execution_ids(producers)
                  if e.type in _INPUTS and e.artifact_id not in seen]
        for parent in store.get_artifacts_by_id(inputs):
            seen.add(parent.id)
            found.append(parent)
            queue.append(parent.id)
    return found


def statistics_of(store: mlmd.MetadataStore, examples: Artifact) -> Artifact | None:
    """The newest statistics StatisticsGen computed over `examples` (its output `statistics`; Transform's
    pre/post-transform statistics are of the same type but describe other data or only some splits)."""
    consumers = [e.execution_id for e in store.get_events_by_artifact_ids([examples.id]) if e.type in _INPUTS]
    outputs = [e.artifact_id for e in store.get_events_by_execution_ids(consumers)
               if e.type in _OUTPUTS and e.path.steps and e.path.steps[0].key == STATISTICS_KEY]
    statistics = [a for a in store.get_artifacts_by_id(outputs) if _type_name(store, a) == "ExampleStatistics"]
    return max(statistics, key=lambda a: (a.create_time_since_epoch, a.id)) if statistics else None


def training_statistics(store: mlmd.MetadataStore, version_dir: str) -> Artifact:
    """Statistics of the raw data the model served from `version_dir` was trained on."""
    ancestors = upstream(store, pushed_model(store, version_dir))
    raw_examples = [a for a in ancestors if _type_name(store, a) == "Examples" and statistics_of(store, a)]
    if not raw_examples:
        raise LineageError(f"ML Metadata has no statistics for the data behind {version_dir}")
    return statistics_of(store, raw_examples[0])  # type: ignore[return-value]
