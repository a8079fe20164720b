"""SpanDriftCheck: has the newest data span drifted from the previous one?

New data arrives in spans (`{SPAN}` in a CSV spec's file pattern). Before a
model is retrained on it, the new span's statistics are compared with the
previous span's by TFDV, using the curated schema's `drift_comparator`s
(L-infinity distance for categorical features, Jensen-Shannon divergence for
numeric ones). The result is an ExampleAnomalies artifact and one warning line
per drifted feature; with `stop_on_drift` the run stops here instead, before
Transform, leaving the served model in place.
"""

import os

import tensorflow_data_validation as tfdv
from absl import logging
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

SPLIT = "train"  # spans are compared on the split models learn from


class SpanDriftError(RuntimeError):
    """The new span drifted past the schema's thresholds and the spec asks to stop on drift."""


def _split_stats(artifact: standard_artifacts.ExampleStatistics):
    return tfdv.load_stats_binary(os.path.join(artifact.uri, f"Split-{SPLIT}", "FeatureStats.pb"))


def drift_lines(anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """One line per drifted feature (TFDV reports drift as comparator anomalies)."""
    return [f"feature {feature!r}: {reason.description}" for feature, info in sorted(anomalies.anomaly_info.items())
            for reason in info.reason if anomalies_pb2.AnomalyInfo.Type.Name(reason.type).startswith("COMPARATOR_")]


@component
def SpanDriftCheck(statistics: InputArtifact[standard_artifacts.ExampleStatistics],
                   schema: InputArtifact[standard_artifacts.Schema],
                   drift: OutputArtifact[standard_artifacts.ExampleAnomalies],
                   previous_statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
                   stop_on_drift: Parameter[bool] = False) -> None:
    """Writes the drift anomalies of this span against the previous run's (none for the first span).

    `previous_statistics` is resolved before this run's StatisticsGen runs; when that
    StatisticsGen was cached (the same span again), both are one artifact and nothing is compared.
    """
    drift.split_names = f'["{SPLIT}"]'
    anomalies = anomalies_pb2.Anomalies()
    if previous_statistics is None or previous_statistics.id == statistics.id:
        logging.info("No earlier data span to compare with; no drift check.")
    else:
        schema_proto = tfdv.load_schema_text(os.path.join(schema.uri, "schema.pbtxt"))
        anomalies = tfdv.validate_statistics(_split_stats(statistics), schema_proto,
                                             previous_statistics=_split_stats(previous_statistics))
        lines = drift_lines(anomalies)
        for line in lines:
            logging.warning("New data drifted from the previous span: %s", line)
        if not lines:
            logging.info("New data: no drift from the previous span.")
        if lines and stop_on_drift:
            raise SpanDriftError("the new data span drifted from the previous one (source.stop_on_drift is set); "
                                 "the run stops before training:\n  " + "\n  ".join(lines))
    os.makedirs(os.path.join(drift.uri, f"Split-{SPLIT}"), exist_ok=True)
    tfdv.write_anomalies_text(anomalies, os.path.join(drift.uri, f"Split-{SPLIT}", "SchemaDiff.pbtxt"))
