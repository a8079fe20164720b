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
    return [f"feature {feature!r}: {reason.description}" for feature, info in sorted(anomalies.anomaly_info.items())
            for reason in info.reason if "DRIFT" in anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
            or "COMPARATOR" in anomalies_pb2.AnomalyInfo.Type.Name(reason.type)]


@component
def SpanDriftCheck(statistics: InputArtifact[standard_artifacts.ExampleStatistics],
                   schema: InputArtifact[standard_artifacts.Schema],
                   drift: OutputArtifact[standard_artifacts.ExampleAnomalies],
                   previous_statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
                   stop_on_drift: Parameter[bool] = False) -> None:
    """Writes the drift anomalies of this span against the previous one (none for the first span)."""
    drift.split_names = f'["{SPLIT}"]'
    anomalies = anomalies_pb2.Anomalies()
    if previous_statistics is None or previous_statistics.span >= statistics.span:
        logging.info("Span %s: no earlier span to compare with; no drift check.", statistics.span)
    else:
        schema_proto = tfdv.load_schema_text(os.path.join(schema.uri, "schema.pbtxt"))
        anomalies = tfdv.validate_statistics(_split_stats(statistics), schema_proto,
                                             previous_statistics=_split_stats(previous_statistics))
        lines = drift_lines(anomalies)
        for line in lines:
            logging.warning("Span %s drifted from span %s: %s", statistics.span, previous_statistics.span, line)
        if not lines:
            logging.info("Span %s: no drift from span %s.", statistics.span, previous_statistics.span)
        if lines and stop_on_drift:
            raise SpanDriftError(f"span {statistics.span} drifted from span {previous_statistics.span} "
                                 f"(source.stop_on_drift is set):\n  " + "\n  ".join(lines))
    os.makedirs(os.path.join(drift.uri, f"Split-{SPLIT}"), exist_ok=True)
    tfdv.write_anomalies_text(anomalies, os.path.join(drift.uri, f"Split-{SPLIT}", "SchemaDiff.pbtxt"))
