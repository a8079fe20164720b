"""`python -m pipeline monitor`: is the served model seeing the data it was trained on?

Logged requests become rows, TFDV computes their statistics, and three checks
compare them with the statistics of the training data (found through ML Metadata
from the pushed model):
- skew per feature with the thresholds of the curated schema's `skew_comparator`
  (L-infinity distance for categorical features, Jensen-Shannon divergence for numeric ones,
  the served values counted in the training histogram's buckets: pipeline/aligned_histograms.py);
- the curated schema itself in its SERVING environment: out-of-domain values
  (an unseen category, a value outside `int_domain`), missing features;
- numeric values outside the range seen in training (the lecture's unseen customer
  has NumOfProducts 5, the training data 1 to 4), which no schema bound catches
  when the bound is set wider than the data, as curated bounds are.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import logging
import os
import pathlib

import pandas as pd
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from pipeline import aligned_histograms, lineage, metadata, serving_logs
from pipeline.config import PipelineConfig
from pipeline.monitor_results import monitoring_dir
from pipeline.predict import latest_version
from specs.dataset import DatasetSpec

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Breach:
    """One failed check: which feature, what kind of problem, in words."""

    feature: str
    kind: str      # skew, out_of_domain, missing, outside_training_range, drift
    detail: str

    def line(self) -> str:
        return f"{self.kind}: feature {self.feature!r}: {self.detail}"


@dataclasses.dataclass
class MonitorResult:
    model_dir: str
    rows: int
    files: int
    breaches: list[Breach]
    output_dir: pathlib.Path
    run_id: str | None = None               # the run that pushed the served model
    report: pathlib.Path | None = None      # its run report, rewritten with this check in it


def load_statistics(artifact_uri: str, split: str = "train") -> statistics_pb2.DatasetFeatureStatisticsList:
    return tfdv.load_stats_binary(os.path.join(artifact_uri, f"Split-{split}", "FeatureStats.pb"))


def load_schema(path: str) -> schema_pb2.Schema:
    return tfdv.load_schema_text(path)


def _kind_of(reason: anomalies_pb2.AnomalyInfo.Reason) -> str:
    name = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
    if name.startswith("COMPARATOR_") and "DRIFT" not in name:
        return "skew"
    if "MISSING" in name or name in ("SCHEMA_MISSING_COLUMN", "SCHEMA_NEW_COLUMN"):
        return "missing"
    return "out_of_domain"


def anomaly_breaches(anomalies: anomalies_pb2.Anomalies, kind: str | None = None) -> list[Breach]:
    """One breach per anomaly reason TFDV found; `kind` overrides the classification (drift)."""
    return [Breach(feature, kind or _kind_of(reason), reason.description or reason.short_description)
            for feature, info in sorted(anomalies.anomaly_info.items()) for reason in info.reason]


def _numeric_range(feature: statistics_pb2.FeatureNameStatistics) -> tuple[float, float] | None:
    if feature.HasField("num_stats") and feature.num_stats.common_stats.num_non_missing:
        return feature.num_stats.min, feature.num_stats.max
    return None


def range_breaches(training: statistics_pb2.DatasetFeatureStatisticsList,
                   serving: statistics_pb2.DatasetFeatureStatisticsList, features: tuple[str, ...]) -> list[Breach]:
    """Numeric features whose served values leave the [min, max] seen in training."""
    seen = {aligned_histograms.feature_name(f): _numeric_range(f) for f in training.datasets[0].features}
    breaches = []
    for feature in serving.datasets[0].features:
        name = aligned_histograms.feature_name(feature)
        served, trained = _numeric_range(feature), seen.get(name)
        if name in features and served and trained and (served[0] < trained[0] or served[1] > trained[1]):
            breaches.append(Breach(name, "outside_training_range",
                                   f"served values span {served[0]:g} to {served[1]:g}; "
                                   f"training data spans {trained[0]:g} to {trained[1]:g}"))
    return breaches


def serving_statistics(frame: pd.DataFrame, features: tuple[str, ...],
                       training: statistics_pb2.DatasetFeatureStatisticsList) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV's statistics of the served rows, numeric histograms on the training buckets (aligned_histograms)."""
    served = frame[[f for f in features if f in frame.columns]]
    statistics = tfdv.generate_statistics_from_dataframe(served)
    aligned_histograms.align_to_training(statistics, training, {name: served[name] for name in served.columns})
    return statistics


def compare(spec: DatasetSpec, schema: schema_pb2.Schema, training: statistics_pb2.DatasetFeatureStatisticsList,
            rows: list[dict]) -> tuple[list[Breach], statistics_pb2.DatasetFeatureStatisticsList, anomalies_pb2.Anomalies]:
    """All checks on served rows; returns the breaches, the served statistics and TFDV's anomalies."""
    serving = serving_statistics(pd.DataFrame(rows), spec.feature_names, training)
    skew = tfdv.validate_statistics(training, schema, serving_statistics=serving)
    domain = tfdv.validate_statistics(serving, schema, environment="SERVING")
    anomalies = anomalies_pb2.Anomalies()
    anomalies.CopyFrom(domain)
    for feature, info in skew.anomaly_info.items():
        reasons = [r for r in info.reason if _kind_of(r) == "skew"]
        if reasons:
            anomalies.anomaly_info[feature].reason.extend(reasons)
    breaches = anomaly_breaches(anomalies) + range_breaches(training, serving, spec.feature_names)
    return sorted(set(breaches), key=lambda b: (b.feature, b.kind, b.detail)), serving, anomalies


def write_outputs(output_dir: pathlib.Path, result: MonitorResult, serving: statistics_pb2.DatasetFeatureStatisticsList,
                  anomalies: anomalies_pb2.Anomalies) -> None:
    """anomalies.pbtxt (TFDV's format), the served statistics, a JSON summary and an HTML section."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tfdv.write_anomalies_text(anomalies, str(output_dir / "anomalies.pbtxt"))
    tfdv.write_stats_text(serving, str(output_dir / "serving_stats.pbtxt"))
    summary = {"model": result.model_dir, "run_id": result.run_id, "rows": result.rows, "files": result.files,
               "breaches": [dataclasses.asdict(b) for b in result.breaches]}
    (output_dir / "monitor.json").write_text(json.dumps(summary, indent=2))
    (output_dir / "monitor.html").write_text(html_section(result))


def html_section(result: MonitorResult) -> str:
    """The monitoring section of the run report: one table row per breach."""
    verdict = (f"{len(result.breaches)} breach(es)" if result.breaches else "no breach")
    rows = "".join(f"<tr><td>{html.escape(b.feature)}</td><td>{b.kind}</td><td>{html.escape(b.detail)}</td></tr>"
                   for b in result.breaches)
    table = (f"<table><tr><th>feature</th><th>check</th><th>detail</th></tr>{rows}</table>" if rows else "")
    checked = result.output_dir.name
    return (f"<h3>Check {html.escape(checked)}</h3>"
            f"<p>Model {html.escape(result.model_dir)}: {result.rows} logged instances from {result.files} "
            f"file(s): {verdict}.</p>{table}\n")


def monitor(spec: DatasetSpec, config: PipelineConfig, logs: pathlib.Path, since: dt.datetime | None = None,
            output_dir: pathlib.Path | None = None, model_name: str | None = None) -> MonitorResult:
    """Checks the logged requests under `logs` (to `model_name`, default the data set's name) against the
    served model's training data."""
    model_dir = str(latest_version(pathlib.Path(config.serving_dir_for(spec))))
    store = metadata.open_store(config.metadata_for(spec))
    run_id = lineage.run_of(store, lineage.pushed_model(store, model_dir))
    training_artifact = lineage.training_statistics(store, model_dir)
    training = load_statistics(training_artifact.uri)
    files = serving_logs.log_files(logs, since)
    rows = serving_logs.logged_rows(files, model_name or spec.name)
    if not rows:
        raise ValueError(f"no logged {model_name or spec.name} requests in {logs}"
                         f"{' since ' + since.isoformat() if since else ''}; is request logging on "
                         "(logging_config in the model server's config)?")
    log.info("Comparing %d logged instances from %d file(s) with the training data of %s (%s)",
             len(rows), len(files), model_dir, training_artifact.uri)
    breaches, serving, anomalies = compare(spec, load_schema(config.schema_for(spec)), training, rows)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result = MonitorResult(model_dir, len(rows), len(files), breaches,
                           output_dir or monitoring_dir(config, spec) / stamp, run_id)
    write_outputs(result.output_dir, result, serving, anomalies)
    if run_id:  # the served model's run report gains this check as a section
        from pipeline.report import write_report
        result.report = write_report(spec, config, run_id)
    return result
