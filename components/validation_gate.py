"""ValidationGate: stops the run when ExampleValidator found anomalies.

ExampleValidator only records anomalies; TFX would train on bad data anyway.
The gate runs between ExampleValidator and Transform and fails with a message
naming the data source, split, feature and problem, so nothing downstream
(Transform, Trainer, Pusher) runs and the last pushed model stays in place.
"""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts


class DataAnomalyError(RuntimeError):
    """The data does not match the curated schema."""


def describe_anomalies(anomalies_uri: str, split_names: str) -> list[str]:
    """One line per anomalous feature: `split train: feature 'Age': <short> (<long>)`."""
    problems = []
    for split in artifact_utils.decode_split_names(split_names):
        path = os.path.join(anomalies_uri, f"Split-{split}", "SchemaDiff.pb")
        if not fileio.exists(path):
            continue
        with fileio.open(path, "rb") as f:
            anomalies = anomalies_pb2.Anomalies.FromString(f.read())
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(f"{r.short_description} ({r.description})" for r in info.reason)
            problems.append(f"split {split}: feature {feature!r}: {reasons or info.description}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            reasons = "; ".join(f"{r.short_description} ({r.description})" for r in info.reason)
            problems.append(f"split {split}: whole data set: {reasons or info.description}")
    return problems


@component
def ValidationGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies], source: Parameter[str]) -> None:
    """Raises DataAnomalyError listing every anomaly; passes silently on clean data."""
    artifact = anomalies
    problems = describe_anomalies(artifact.uri, artifact.split_names)
    if problems:
        raise DataAnomalyError(
            f"data in {source} does not match the curated schema; the run stops before training "
            "and the last pushed model stays in place:\n  " + "\n  ".join(problems)
            + "\nFix the data, or if the change is intended, update the schema "
              "(`python -m pipeline schema --dataset NAME` drafts one from the data).")
