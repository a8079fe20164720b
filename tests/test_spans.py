"""Data in spans: `{SPAN}` in the file pattern, a rolling window of spans, drift between spans (real runs)."""
from __future__ import annotations

import dataclasses
import os

import pytest
import tensorflow_data_validation as tfdv

from pipeline import metadata
from pipeline.config import PipelineConfig
from pipeline.kubeflow import ClusterOptions, cluster_config, compile_pipeline
from pipeline.local_runner import run_local
from pipeline.predict import latest_version
from pipeline.spans import span_window
from specs.dataset import PROJECT_ROOT
from specs.errors import SpecError, UsageError
from tests.support import isolated_config

CHURN_CSV = PROJECT_ROOT / "data/churn/Churn_Modelling.csv"
RELAXED = {"AUC": {"lower_bound": 0.6}}
ROWS_PER_SPAN = 800


def write_span(directory, span: int, age_shift: int = 0) -> None:
    """Span `span` of the churn data: its own 800 real rows, Age shifted by `age_shift` years."""
    lines = CHURN_CSV.read_text().splitlines()
    header, rows = lines[0], lines[1 + (span - 1) * ROWS_PER_SPAN: 1 + span * ROWS_PER_SPAN]
    age = header.split(",").index("Age")

    def shifted(row: str) -> str:
        cells = row.split(",")
        cells[age] = str(int(cells[age]) + age_shift)
        return ",".join(cells)

    (directory / f"churn-{span}.csv").write_text("\n".join([header, *map(shifted, rows)]) + "\n")


@pytest.fixture(scope="module")
def span_spec(churn_spec):
    return dataclasses.replace(churn_spec, source={**churn_spec.source, "pattern": "churn-{SPAN}.csv",
                                                   "span_window": 2})


def spans_read_by(store, component: str) -> list[int]:
    run = {c.component: c for c in metadata.latest_run(store)}
    return sorted(int(metadata.custom_property(a, "span")) for a in run[component].inputs["examples"])


@pytest.mark.e2e
def test_a_window_of_two_spans_is_trained_on_and_pushed_only_when_blessed(span_spec, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_span(data, 1)
    config = isolated_config(tmp_path, input_base=str(data), thresholds=RELAXED, hparams={"epochs": 3})
    first = run_local(span_spec, config)
    assert first.blessed is True and first.pushed_path
    pushed = latest_version(config.serving_dir / "churn")

    write_span(data, 2, age_shift=15)  # a new span arrives, and its customers are 15 years older
    second = run_local(span_spec, dataclasses.replace(config, thresholds={"AUC": {"lower_bound": 0.999}}))
    store = metadata.open_store(config.metadata_for(span_spec))
    assert spans_read_by(store, "Transform") == [1, 2], "Transform (and so the Trainer) reads both spans"
    assert spans_read_by(store, "Evaluator") == [1, 2]

    drift = {c.component: c for c in metadata.latest_run(store)}["SpanDriftCheck"].outputs["drift"][0]
    anomalies = tfdv.load_anomalies_text(os.path.join(drift.uri, "Split-train", "SchemaDiff.pbtxt"))
    assert "Age" in anomalies.anomaly_info, "span 2's older customers are drift against span 1"
    assert "Geography" not in anomalies.anomaly_info

    assert second.blessed is False and not second.pushed_path, "a model that is not blessed is not pushed"
    assert latest_version(config.serving_dir / "churn") == pushed


def test_span_window_needs_the_span_token(churn_spec):
    bad = dataclasses.replace(churn_spec, source={**churn_spec.source, "span_window": 3})
    with pytest.raises(SpecError, match=r"\{SPAN\}"):
        span_window(bad)


def compile_for(spec, target: str, output):
    options = ClusterOptions(target=target, image="registry.example/kit:1", pipeline_root="gs://kit/root",
                             serving_dir="gs://kit/serving")
    return compile_pipeline(spec, cluster_config(spec, PipelineConfig(), options), options, output)


def test_a_scheduled_kubeflow_run_resolves_the_newest_spans_itself(span_spec, tmp_path):
    """The compiled pipeline carries the {SPAN} pattern and the span resolvers, so each scheduled run
    ingests whatever span is newest when it starts: a new file needs no new compile."""
    compiled = compile_for(span_spec, "kfp-v1", tmp_path / "churn.yaml").read_text()
    assert "churn-{SPAN}.csv" in compiled
    for node in ("span-window-resolver", "previous-span-statistics", "spandriftcheck"):
        assert node in compiled.lower().replace("_", "-"), node


def test_kfp_v2_cannot_compile_a_rolling_window_and_says_what_to_do(span_spec, tmp_path):
    with pytest.raises(UsageError, match="kfp-v1"):
        compile_for(span_spec, "kfp-v2", tmp_path / "churn.json")
    newest_only = dataclasses.replace(span_spec, source={**span_spec.source, "span_window": 1})
    assert "churn-{SPAN}.csv" in compile_for(newest_only, "kfp-v2", tmp_path / "churn.json").read_text()
