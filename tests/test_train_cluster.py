"""`python -m pipeline train-cluster`: two worker processes train one model together, and it serves.

The end-to-end test runs the real command on 1,500 churn rows: LocalDagRunner,
two worker processes with their TF_CONFIG on localhost ports, MultiWorkerMirroredStrategy,
the Evaluator and the Pusher. The supervision tests start real processes (small
Python scripts in place of TensorFlow workers, so they take seconds).
"""
from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import time

import pytest

from components.multi_worker_trainer import LocalCluster, Task, WorkerFailed, one_line, task_of, tf_config
from specs.dataset import PROJECT_ROOT

WORKERS = 2
EPOCHS = 10  # enough to pass AUC >= 0.6 on 1,500 rows


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
    failing = ("import time; time.sleep(1); print('error: ValueError: bad input in worker 1', flush=True); "
               "raise SystemExit(1)")
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
    assert all(n > 0 for n in steps["worker-0"]["steps_per_epoch"])
    for index in range(WORKERS):
        lines = [line for line in stderr.splitlines() if line.startswith(f"[worker {index}] ")]
        assert any(line.startswith(f"[worker {index}] worker {index} of {WORKERS}") for line in lines)
        epochs = [line for line in lines if re.search(rf"epoch \d+/{EPOCHS}: ", line)]
        assert len(epochs) == len(steps[f"worker-{index}"]["steps_per_epoch"])


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


# Kubeflow: no cluster runs here. What is checked is the compiled Argo Workflow, the TFJob the
# Trainer step creates, and the step's create/wait logic against a stand-in of the Kubernetes API.

IMAGE = "registry.example.com/tfx-pipeline-kit:test"


def operator_tf_config(name: str, namespace: str, workers: int, index: int) -> str:
    """TF_CONFIG as Kubeflow's training operator sets it for TFJob Worker replica `index`."""
    return json.dumps({"cluster": {"worker": [f"{name}-worker-{i}.{namespace}.svc:2222" for i in range(workers)]},
                       "task": {"type": "worker", "index": index}, "environment": "cloud"})


def test_the_tfjob_has_n_workers_running_the_plan_and_worker_0_is_the_chief():
    from components.tfjob import TfJobOptions, tfjob_manifest
    plan = "gs://bucket/tfx/churn/Trainer/model_run/7/cluster_plan.json"
    job = tfjob_manifest("trainer-abc", "team-a", plan, 3, TfJobOptions(image=IMAGE))
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "TFJob")
    assert job["metadata"] == {"name": "trainer-abc", "namespace": "team-a"}
    replicas = job["spec"]["tfReplicaSpecs"]
    assert list(replicas) == ["Worker"] and replicas["Worker"]["replicas"] == 3
    assert replicas["Worker"]["restartPolicy"] == "Never"
    (container,) = replicas["Worker"]["template"]["spec"]["containers"]
    assert container["name"] == "tensorflow" and container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "components.multi_worker_trainer", plan]
    assert container["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]
    tasks = [task_of(operator_tf_config("trainer-abc", "team-a", 3, i)) for i in range(3)]
    assert [t.chief for t in tasks] == [True, False, False] and {t.workers for t in tasks} == {3}


def test_the_tfjob_mounts_the_shared_volume_when_there_is_one():
    from components.tfjob import TfJobOptions, tfjob_manifest
    job = tfjob_manifest("t", "ns", "/tfx-shared/plan.json", 2,
                         TfJobOptions(image=IMAGE, volume="tfx-pvc", mount_path="/tfx-shared"))
    pod = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "tfx-shared", "persistentVolumeClaim": {"claimName": "tfx-pvc"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "tfx-shared", "mountPath": "/tfx-shared"}]


class FakeCustomObjects:
    """Stands in for the cluster's Kubernetes API (kubernetes.client.CustomObjectsApi): records the
    created object and answers with the given status conditions, one per poll."""

    def __init__(self, conditions: list[list[dict]]) -> None:
        self.conditions, self.created = iter(conditions), []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.created.append((group, version, namespace, plural, body))
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        return {"metadata": {"name": name}, "status": {"conditions": next(self.conditions)}}


def test_the_trainer_step_waits_for_the_tfjob_to_succeed():
    from components.tfjob import TfJobOptions, run_tfjob, tfjob_manifest
    job = tfjob_manifest("trainer-abc", "team-a", "gs://b/plan.json", 2, TfJobOptions(image=IMAGE))
    api = FakeCustomObjects([[], [{"type": "Created", "status": "True"}],
                             [{"type": "Running", "status": "True"}],
                             [{"type": "Running", "status": "False"}, {"type": "Succeeded", "status": "True"}]])
    said = []
    run_tfjob(job, api, said.append, poll_s=0)
    assert api.created == [("kubeflow.org", "v1", "team-a", "tfjobs", job)]
    assert said[-1] == "TFJob trainer-abc succeeded" and "TFJob trainer-abc: Running" in said


def test_a_failed_tfjob_fails_the_trainer_step_with_its_message():
    from components.tfjob import TfJobFailed, TfJobOptions, run_tfjob, tfjob_manifest
    job = tfjob_manifest("trainer-abc", "team-a", "gs://b/plan.json", 2, TfJobOptions(image=IMAGE))
    api = FakeCustomObjects([[{"type": "Running", "status": "True"}],
                             [{"type": "Failed", "status": "True", "message": "TFJob trainer-abc has failed because "
                                                                             "1 Worker replica(s) failed."}]])
    with pytest.raises(TfJobFailed, match="team-a/trainer-abc failed: .*1 Worker replica"):
        run_tfjob(job, api, lambda line: None, poll_s=0)


@pytest.fixture(scope="module")
def compiled_cluster(tmp_path_factory):
    from pipeline.cli import main
    output = tmp_path_factory.mktemp("kfp_cluster") / "churn.yaml"
    assert main(["compile-cluster", "--dataset", "churn", "--workers", "3", "--output", str(output),
                 "--image", IMAGE, "--pipeline-root", "gs://kit-bucket/tfx",
                 "--serving-dir", "gs://kit-bucket/serving"]) == 0
    import yaml
    workflow = yaml.safe_load(output.read_text())
    steps = {t["name"]: t for t in workflow["spec"]["templates"] if "container" in t}
    def ir(name):
        args = steps[name]["container"]["args"]
        return json.loads(args[args.index("--tfx_ir") + 1])
    return steps, ir


def trainer_hparams(ir: dict) -> dict:
    nodes = [n["pipelineNode"] for n in ir["nodes"] if n["pipelineNode"]["nodeInfo"]["id"] == "Trainer"]
    (trainer,) = nodes
    value = trainer["parameters"]["parameters"]["custom_config"]["fieldValue"]["stringValue"]
    return json.loads(value)["hparams"]


def test_compiled_pipeline_runs_the_trainer_as_a_three_worker_tfjob(compiled_cluster):
    steps, ir = compiled_cluster
    trainer_ir = ir("trainer")
    hparams = trainer_hparams(trainer_ir)
    assert hparams["workers"] == 3 and hparams["strategy"] == "multi_worker_mirrored"
    assert hparams["tfjob"] == {"image": IMAGE}
    executors = trainer_ir["deploymentConfig"]["executorSpecs"]
    assert executors["Trainer"]["classPath"] == "components.multi_worker_trainer.Executor"
    assert steps["trainer"]["container"]["image"] == IMAGE
    # Only the Trainer changes: Transform keeps the executor every pipeline gives it (components/transform.py).
    from components.transform import Executor as TransformExecutor
    transform = ir("transform")["deploymentConfig"]["executorSpecs"]["Transform"]
    assert transform["pythonExecutorSpec"]["classPath"] == f"{TransformExecutor.__module__}.{TransformExecutor.__name__}"


def test_compile_cluster_refuses_kfp_v2_and_names_the_vertex_trainer(tmp_path):
    from pipeline.kubeflow import ClusterOptions
    from pipeline.config import PipelineConfig
    from pipeline.train_cluster import compile_cluster
    from specs.dataset import load_spec
    from specs.errors import UsageError
    with pytest.raises(UsageError, match="google_cloud_ai_platform.Trainer"):
        compile_cluster(load_spec("churn"), PipelineConfig(), ClusterOptions(target="kfp-v2", image=IMAGE), 2,
                        tmp_path / "churn.json")


def test_train_cluster_refuses_what_it_cannot_do(churn_spec):
    from pipeline.config import PipelineConfig
    from pipeline.train_cluster import check_request
    from specs.dataset import load_spec
    from specs.errors import UsageError
    with pytest.raises(UsageError, match="trains Keras models; wine_white uses --trainer estimator"):
        check_request(load_spec("wine_white"), PipelineConfig(), 2)
    with pytest.raises(UsageError, match="give 2 or more"):
        check_request(churn_spec, PipelineConfig(), 1)
    with pytest.raises(UsageError, match="drop --strategy mirrored"):
        check_request(churn_spec, PipelineConfig(strategy="mirrored"), 2)
    check_request(churn_spec, PipelineConfig(), 2)
