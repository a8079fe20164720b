"""The up-to-date check: a re-run with nothing changed answers without starting the pipeline, and only then.

These tests build the check's inputs themselves (a data folder, a schema copy, a
metadata file standing in for the store, a pushed directory) and record a run
with `unchanged_run.record`, as `python -m pipeline run` does after a real run;
`python -m bench.penguin_compare` times the same check after a real run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from pipeline import unchanged_run
from pipeline.config import PipelineConfig
from specs.dataset import PROJECT_ROOT, load_spec
from tests.support import isolated_config

REPORT = {"dataset": "churn", "seconds": 60.0, "blessed": True, "metrics": {"auc": 0.86}, "components": []}


@pytest.fixture
def setup(tmp_path):
    """A churn spec and config over copies of its data and schema; a store file and a pushed model in place."""
    spec = load_spec("churn")
    data = tmp_path / "data"
    shutil.copytree(PROJECT_ROOT / "data" / "churn", data)
    schema = tmp_path / "schema.pbtxt"
    shutil.copy(spec.schema_path, schema)
    config = isolated_config(tmp_path, input_base=str(data), schema_file=str(schema))
    store = config.metadata_for(spec)
    store.parent.mkdir(parents=True)
    store.write_bytes(b"store as the run left it")
    pushed = tmp_path / "serving" / "churn" / "1"
    pushed.mkdir(parents=True)
    key = unchanged_run.run_key(spec, config)
    unchanged_run.record(spec, config, key, {**REPORT, "pushed_path": str(pushed)}, 0)
    return spec, config, data, schema, store, pushed


def test_nothing_changed_gives_the_recorded_run(setup):
    spec, config, *_ = setup
    previous = unchanged_run.unchanged_run(spec, config, unchanged_run.run_key(spec, config))
    assert previous is not None and previous["report"]["metrics"] == REPORT["metrics"]
    assert "the pipeline was not started" in unchanged_run.summary(spec, previous)


def edit_data(setup) -> None:
    csv = next(setup[2].glob("*.csv"))
    csv.write_bytes(csv.read_bytes() + b"\n")


def new_span(setup) -> None:
    (setup[2] / "Churn_Modelling-2.csv").write_text("RowNumber\n")


def touch_data(setup) -> None:
    csv = next(setup[2].glob("*.csv"))
    os.utime(csv, ns=(csv.stat().st_atime_ns, csv.stat().st_mtime_ns + 10**9))


def edit_schema(setup) -> None:
    setup[3].write_text(setup[3].read_text() + "\n# curated again\n")


@pytest.mark.parametrize("edit", [edit_data, new_span, touch_data, edit_schema])
def test_a_changed_input_file_starts_the_pipeline(setup, edit):
    spec, config, *_ = setup
    edit(setup)
    assert unchanged_run.unchanged_run(spec, config, unchanged_run.run_key(spec, config)) is None


@pytest.mark.parametrize("change", [
    lambda spec, config: (spec, dataclasses.replace(config, hparams={"epochs": 3})),
    lambda spec, config: (spec, dataclasses.replace(config, thresholds={"AUC": {"lower_bound": 0.5}})),
    lambda spec, config: (spec, dataclasses.replace(config, seed=7)),
    lambda spec, config: (dataclasses.replace(spec, model={**spec.model, "dropout": 0.3}), config),
])
def test_a_changed_option_or_spec_starts_the_pipeline(setup, change):
    spec, config = change(*setup[:2])
    assert unchanged_run.unchanged_run(spec, config, unchanged_run.run_key(spec, config)) is None


def test_another_write_to_ml_metadata_starts_the_pipeline(setup):
    spec, config, _, _, store, _ = setup
    store.write_bytes(b"store after a compare run wrote to it")
    assert unchanged_run.unchanged_run(spec, config, unchanged_run.run_key(spec, config)) is None


def test_a_removed_pushed_model_starts_the_pipeline(setup):
    spec, config, *_, pushed = setup
    pushed.rmdir()
    assert unchanged_run.unchanged_run(spec, config, unchanged_run.run_key(spec, config)) is None


def test_no_cache_never_takes_the_shortcut(setup):
    spec, config, *_ = setup
    config = dataclasses.replace(config, enable_cache=False)
    assert unchanged_run.unchanged_run(spec, config, unchanged_run.run_key(spec, config)) is None


def test_tfds_data_sets_always_run():
    spec = load_spec("fashion_mnist")
    assert unchanged_run.run_key(spec, PipelineConfig()) is None


def test_the_code_fingerprint_follows_python_sources_only(tmp_path):
    for package in unchanged_run.CODE_PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "module.py").write_text("X = 1\n")
    before = unchanged_run.code_fingerprint(tmp_path)
    (tmp_path / "models" / "notes.md").write_text("not code")
    assert unchanged_run.code_fingerprint(tmp_path) == before
    (tmp_path / "models" / "module.py").write_text("X = 2\n")
    assert unchanged_run.code_fingerprint(tmp_path) != before


def test_the_run_command_answers_from_the_record_without_importing_tensorflow(setup, tmp_path):
    spec, config, data, schema, *_ = setup
    report = tmp_path / "report.json"
    args = ["run", "--dataset", "churn", "--data-dir", str(data), "--home", str(config.home),
            "--serving-dir", str(config.serving_dir), "--report", str(report)]
    # The schema override is not a CLI option: record again for the spec's own schema path.
    unchanged_run.record(spec, dataclasses.replace(config, schema_file=None),
                         unchanged_run.run_key(spec, dataclasses.replace(config, schema_file=None)),
                         {**REPORT, "blessed": False}, 3)
    code = ("import sys; from pipeline.cli import main; code = main(sys.argv[1:]); "
            "print('tensorflow imported:', 'tensorflow' in sys.modules); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr  # the recorded run's exit code: not blessed
    assert "Nothing changed since the run of 'churn'" in done.stdout
    assert "tensorflow imported: False" in done.stdout
    written = json.loads(report.read_text())
    assert written["pipeline_started"] is False and written["components"] == [] and written["blessed"] is False
