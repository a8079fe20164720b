"""`python -m pipeline train-cluster`: two worker processes train one model together, and it serves.

The end-to-end test runs the real command on 1,500 churn rows: LocalDagRunner,
two worker processes with their TF_CONFIG on localhost ports, MultiWorkerMirroredStrategy,
the Evaluator and the Pusher. The supervision tests start real processes (small
Python scripts in place of TensorFlow workers, so they take seconds).
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import pytest

from components.multi_worker_trainer import LocalCluster, Task, WorkerFailed, one_line, task_of, tf_config
from specs.dataset import PROJECT_ROOT

WORKERS = 2
EPOCHS = 3


def test_tf_config_names_the_cluster_and_each_worker():
    addresses = ["localhost:2222", "localhost:2223"]
    configs = [json.loads(tf_config(addresses, i)) for i in range(2)]
    assert [c["cluster"] for c in configs] == [{"worker": addresses}] * 2
    assert [c["task"] for c in configs] == [{"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    assert [task_of(tf_config(addresses, i)) for i in range(2)] == [Task("worker", 0, 2, True),
                                                                    Task("worker", 1, 2, False)]


def test_the_chief_task_saves_when_the_cluster_has_one():
    config = {"cluster": {"chief": ["c:1"], "worker": ["w:1", "w:2"]}, "task": {"type": "worker", "index": 0}}
    assert task_of(json.dumps(config)) == Task("worker", 0, 3, False)
    assert task_of(json.dumps({**config, "task": {"type": "chief", "index": 0}})).chief
    assert task_of(None) == Task("worker", 0, 1, True)


def test_a_tensorflow_error_is_cut_to_the_line_that_says_what_happened():
    message = ("Graph execution error:\n\nDetected at node X defined at (most recent call last):\n"
               "<stack traces unavailable>\nCould not apply FILE based sharding: 1 file(s)\n\t [[{{node X}}]]")
    assert one_line(RuntimeError(message)) == "Could not apply FILE based sharding: 1 file(s)"


class ScriptCluster(LocalCluster):
    """Real worker processes running a small script per worker instead of the Trainer (seconds, not minutes)."""

    def __init__(self, scripts: list[str], out) -> None:
        super().__init__("unused-plan.json", len(scripts), out)
        self.scripts = iter(scripts)

    def command(self) -> list[str]:
        return [sys.executable, "-c", next(self.scripts)]


def test_a_failing_worker_stops_the_others_and_names_itself(tmp_path):
    log = tmp_path / "log.txt"
    waiting = "import os, time; print('TF_CONFIG', os.environ['TF_CONFIG'], flush=True); time.sleep(600)"
    failing = "import time; time.sleep(1); print('error: ValueError: bad input in worker 1', flush=True); raise SystemExit(1)"
    started = time.monotonic()
    with log.open("w") as out, pytest.raises(WorkerFailed) as failure:
        ScriptCluster([waiting, failing], out).run()
    assert time.monotonic() - started < 60, "the waiting worker was not stopped"
    assert str(failure.value).startswith("worker 1 of 2 exited with code 1: ValueError: bad input in worker 1")
    lines = log.read_text().splitlines()
    tf_config_line = next(line for line in lines if line.startswith("[worker 0] TF_CONFIG"))
    assert json.loads(tf_config_line.split("TF_CONFIG ", 1)[1])["task"] == {"type": "worker", "index": 0}
    assert "[worker 1] error: ValueError: bad input in worker 1" in lines


def test_all_workers_succeeding_is_success(tmp_path):
    with (tmp_path / "log.txt").open("w") as out:
        ScriptCluster(["print('done')", "print('done')"], out).run()
    assert (tmp_path / "log.txt").read_text().count("] done") == 2


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, churn_sample):
    home = tmp_path_factory.mktemp("train_cluster")
    report = home / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "train-cluster", "--dataset", "churn", "--workers", str(WORKERS),
         "--data-dir", str(churn_sample), "--home", str(home / "runs"), "--serving-dir", str(home / "serving"),
         "--epochs", str(EPOCHS), "--threshold", "AUC>=0.6", "--report", str(report)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(report.read_text()), result.stderr


@pytest.mark.e2e
def test_both_workers_stepped_in_lockstep(cluster_run):
    report, stderr = cluster_run
    steps = report["worker_steps"]
    assert sorted(steps) == ["worker-0", "worker-1"]
    assert all(s and s["steps"] > 0 for s in steps.values()), steps
    # Every step is one all-reduce over both workers: neither can step alone.
    assert steps["worker-0"]["steps_per_epoch"] == steps["worker-1"]["steps_per_epoch"]
    assert len(steps["worker-0"]["steps_per_epoch"]) == EPOCHS
    for index in range(WORKERS):
        assert f"[worker {index}] worker {index} of {WORKERS}" in stderr
        assert f"epoch {EPOCHS}/{EPOCHS}" in "\n".join(line for line in stderr.splitlines()
                                                       if line.startswith(f"[worker {index}]"))


@pytest.mark.e2e
def test_only_the_chief_writes_the_trainer_model(cluster_run):
    report, _ = cluster_run
    model = pathlib.Path(report["model_uri"])
    assert (model / "Format-Serving" / "saved_model.pb").exists()
    assert sorted(p.name for p in model.iterdir()) == ["Format-Serving"]
    trainer = next(c for c in report["components"] if c["component"] == "Trainer")
    assert trainer["state"] == "COMPLETE"


@pytest.mark.e2e
def test_the_pushed_model_serves_raw_instances(cluster_run, churn_spec):
    from pipeline.predict import predict
    report, _ = cluster_run
    assert report["blessed"] is True
    pushed = pathlib.Path(report["pushed_path"])
    predictions = predict(pushed, [dict(churn_spec.example_instance)])
    assert len(predictions) == 1
    assert 0.0 <= predictions[0]["probability"] <= 1.0
