"""Everything a run report shows, read from ML Metadata and the run's artefacts (any past run, failed ones too).

Artefacts are found by the output key that produced them (`statistics`,
`schema`, `anomalies`, `transform_graph`, `model_run`, `evaluation`, `blessing`,
`pushed_model`), so the ExampleGen's id (CSV or TFDS) does not matter, and
split names come from the artefacts' `split_names`, never from this code.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

from ml_metadata.proto import metadata_store_pb2

from pipeline import metadata

Artifact = metadata_store_pb2.Artifact


@dataclasses.dataclass
class RunData:
    """One run as recorded: its components, and a lookup of the artefacts they read and wrote."""

    dataset: str
    run: metadata.PipelineRun
    components: list[metadata.ComponentRun]

    def output(self, key: str) -> Artifact | None:
        """The artefact this run produced (or reused from cache) under output key `key`."""
        for component in self.components:
            artifacts = component.outputs.get(key)
            if artifacts and artifacts[0].state == Artifact.LIVE:
                return artifacts[0]
        return None

    def producer(self, key: str) -> metadata.ComponentRun | None:
        return next((c for c in self.components if key in c.outputs), None)

    def component(self, name: str) -> metadata.ComponentRun | None:
        return next((c for c in self.components if c.component == name), None)

    @property
    def failed(self) -> list[metadata.ComponentRun]:
        return [c for c in self.components if c.state == "FAILED"]

    @property
    def state(self) -> str:
        """FAILED if a component failed, RUNNING if one has not finished, else COMPLETE."""
        states = {c.state for c in self.components}
        if "FAILED" in states:
            return "FAILED"
        if states & {"RUNNING", "NEW", "UNKNOWN"}:
            return "RUNNING"
        return "COMPLETE" if states else "EMPTY"


def open_run_store(path: pathlib.Path, dataset: str, home: pathlib.Path):
    """The data set's ML Metadata store, read-only; FileNotFoundError saying what to do when there is none."""
    if not path.exists():
        raise FileNotFoundError(f"no ML Metadata store at {path}: {dataset} has no recorded runs under --home "
                                f"{home}; run `python -m pipeline run --dataset {dataset}` first")
    return metadata.open_store(path)


def load_run(store, dataset: str, run_id: str | None = None) -> RunData:
    """The run `run_id` (default: the newest) of the store; raises FileNotFoundError if there is none."""
    run = metadata.find_run(store, run_id)
    if run is None:
        known = [r.run_id for r in metadata.pipeline_runs(store)]
        raise FileNotFoundError(f"no run {run_id!r} for {dataset}; known runs: {', '.join(known[-5:]) or 'none'} "
                                f"(list them with `python -m pipeline runs --dataset {dataset}`)" if run_id else
                                f"no pipeline run of {dataset} is recorded yet; run `python -m pipeline run "
                                f"--dataset {dataset}` first")
    return RunData(dataset, run, metadata.run_components(store, run))


def split_names(artifact: Artifact) -> list[str]:
    """The artefact's splits as TFX recorded them (e.g. train, validation, test)."""
    from tfx.types import artifact_utils
    value = artifact.properties.get("split_names")
    return artifact_utils.decode_split_names(value.string_value) if value else []


def split_uri(artifact: Artifact, split: str) -> str:
    """TFX's per-split folder inside a multi-split artefact."""
    return os.path.join(artifact.uri, f"Split-{split}")


def property_value(artifact: Artifact | metadata_store_pb2.Execution, name: str) -> Any:
    """A property or custom property of an artefact or execution, as a Python value."""
    for values in (artifact.properties, artifact.custom_properties):
        value = values.get(name)
        if value is not None and value.WhichOneof("value"):
            return getattr(value, value.WhichOneof("value"))
    return None

