"""Monitoring end to end: a pushed churn model behind the real server with request logging on,
then `python -m pipeline monitor` on the logged requests (real pipeline, server, TFDV, ML Metadata)."""
from __future__ import annotations

import pathlib
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import tensorflow as tf

from pipeline.local_runner import run_local
from pipeline.serving_logs import read_logs
from serving.demo import stop_process
from tests.serving.serving_test_support import REPO, logged_models_config, start_server
from tests.support import isolated_config

pytestmark = pytest.mark.e2e
RELAXED = {"AUC": {"lower_bound": 0.6}}


def training_rows(examples_uri: str, limit: int) -> list[dict]:
    """Raw rows of the run's own train split (so an unshifted stream stays inside the training range)."""
    rows = []
    for path in sorted(pathlib.Path(examples_uri, "Split-train").glob("*.gz")):
        for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            row = {}
            for name, feature in example.features.feature.items():
                kind = feature.WhichOneof("kind")
                value = getattr(feature, kind).value[0]
                row[name] = value.decode() if isinstance(value, bytes) else value
            rows.append(row)
            if len(rows) == limit:
                return rows
    return rows


def monitor(config, logs: pathlib.Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", "monitor", "--dataset", "churn", "--logs", str(logs),
                           "--home", str(config.home), "--serving-dir", str(config.serving_dir), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=900)


def wait_for_records(logs: pathlib.Path, minimum: int, timeout: float = 60) -> None:
    """The server's log writer flushes every second; wait until `minimum` records are on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list(read_logs(p for p in logs.rglob("*") if p.is_file()))) >= minimum:
            return
        time.sleep(0.5)
    pytest.fail(f"the server logged fewer than {minimum} requests in {logs}")


def test_monitor_flags_a_shifted_stream_and_the_unseen_customer(churn_spec, churn_sample, tmp_path):
    config = isolated_config(tmp_path, input_base=str(churn_sample), thresholds=RELAXED, hparams={"epochs": 3})
    run = run_local(churn_spec, config)
    assert run.pushed_path
    examples = {c.component: c for c in run.components}["CsvExampleGen"].outputs["examples"][0].uri
    rows = [{k: v for k, v in row.items() if k != churn_spec.label} for row in training_rows(examples, 400)]

    logs = tmp_path / "logs"
    model_config = tmp_path / "models.config"
    # One pushed model under two names, each with its own request log: "churn" sees customers like the
    # training data, "churn_canary" sees customers 15 years older, a quarter from a new country.
    model_config.write_text(logged_models_config([
        ("churn", config.serving_dir / "churn", logs / "churn" / "requests", 1.0),
        ("churn_canary", config.serving_dir / "churn", logs / "canary" / "requests", 1.0)]))
    shifted = [dict(row, Age=row["Age"] + 15, **({"Geography": "Atlantis"} if i % 4 == 0 else {}))
               for i, row in enumerate(rows[200:400])]
    server = start_server([f"--model_config_file={model_config}"], tmp_path / "server.log",
                          wait_for=["churn", "churn_canary"])
    try:
        with server.rest() as rest:
            for start in range(0, 200, 20):
                rest.predict("churn", instances=rows[start:start + 20])
                rest.predict("churn_canary", instances=shifted[start:start + 20])
            answer = rest.predict("churn_canary", instances=[dict(churn_spec.example_instance)])
            wait_for_records(logs / "churn", 10)
            wait_for_records(logs / "canary", 11)
    finally:
        stop_process(server.process)
    unshifted = monitor(config, logs / "churn")
    drifted = monitor(config, logs / "canary", "--model-name", "churn_canary")

    assert unshifted.returncode == 0, unshifted.stdout + unshifted.stderr
    assert "200 logged instances" in unshifted.stdout and "no breach" in unshifted.stdout

    assert answer["predictions"], "the unseen customer is still answered; monitoring only reports"
    assert drifted.returncode == 4, drifted.stdout + drifted.stderr
    lines = drifted.stdout.splitlines()
    assert any(line.startswith("skew: feature 'Age'") for line in lines), drifted.stdout
    assert any(line.startswith("out_of_domain: feature 'Geography'") and "Atlantis" in line for line in lines)
    assert any(line.startswith("outside_training_range: feature 'NumOfProducts'") for line in lines)
    assert not any("'Gender'" in line or "'Tenure'" in line for line in lines), drifted.stdout
    section = sorted((config.home / "churn" / "monitoring").glob("*/monitor.html"))[-1].read_text()
    assert "NumOfProducts" in section and "Atlantis" in section
    report_line = next(line for line in lines if line.startswith("Run report of the served model"))
    report = pathlib.Path(report_line.split(": ", 1)[1]).read_text()
    assert 'id="monitoring"' in report and report.count("<h3>Check ") == 2, "both checks are in the run report"
    assert "Atlantis" in report
