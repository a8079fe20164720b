"""Kubeflow: every data set compiles for KFP v1 and v2; schedule/submit send the right KFP API calls.

No Kubeflow cluster can run here, so what is proven is the compiled output (parsed
as an Argo Workflow and as the KFP v2 PipelineSpec proto), the Dockerfile recipe,
and the exact requests `schedule` sends, against a local HTTP stand-in of the
KFP v1 REST API (a test double: it records requests and answers like KFP).
"""
from __future__ import annotations

import http.server
import importlib.metadata
import json
import re
import socket
import threading
import urllib.parse

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.beam_runner import beam_args_for
from pipeline.cli import main
from specs.errors import UsageError
from pipeline.config import PipelineConfig
from pipeline.cron import kfp_cron
from pipeline.kubeflow import IMAGE_PROJECT_ROOT, ClusterOptions, cluster_config, compile_pipeline, kfp_name
from specs.dataset import PROJECT_ROOT, available_datasets, load_spec

IMAGE = "registry.example.com/tfx-pipeline-kit:test"
ROOT = "gs://kit-bucket/tfx"
SERVING = "gs://kit-bucket/serving"
DATASETS = available_datasets()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Every data set compiled for both targets once: {(name, target): (path, component ids, config)}."""
    from pipeline.pipeline_def import create_pipeline
    out = tmp_path_factory.mktemp("kfp")
    results = {}
    for name in DATASETS:
        spec = load_spec(name)
        for target, suffix in (("kfp-v1", "yaml"), ("kfp-v2", "json")):
            options = ClusterOptions(target=target, image=IMAGE, pipeline_root=ROOT, serving_dir=SERVING)
            config = cluster_config(spec, PipelineConfig(), options)
            path = compile_pipeline(spec, config, options, out / f"{name}.{suffix}")
            ids = [node.id for node in create_pipeline(spec, config).components]
            results[name, target] = (path, ids, config)
    return results


def k8s_name(component_id: str) -> str:
    return component_id.lower().replace("_", "-")


def tfx_ir(template: dict) -> str:
    args = template["container"]["args"]
    return args[args.index("--tfx_ir") + 1]


@pytest.mark.parametrize("name", DATASETS)
def test_kfp_v1_is_an_argo_workflow_with_one_step_per_component(compiled, name):
    path, ids, _ = compiled[name, "kfp-v1"]
    workflow = yaml.safe_load(path.read_text())
    assert (workflow["apiVersion"], workflow["kind"]) == ("argoproj.io/v1alpha1", "Workflow")
    steps = {t["name"]: t for t in workflow["spec"]["templates"] if "container" in t}
    assert sorted(steps) == sorted(k8s_name(i) for i in ids)
    assert {t["container"]["image"] for t in steps.values()} == {IMAGE}
    dag = next(t for t in workflow["spec"]["templates"] if t["name"] == workflow["spec"]["entrypoint"])
    assert sorted(task["template"] for task in dag["dag"]["tasks"]) == sorted(steps)
    assert workflow["spec"]["arguments"]["parameters"] == [{"name": "pipeline-root", "value": f"{ROOT}/{name}"}]
    # The cluster's ML Metadata (from its configmap), not a local sqlite file; paths inside the image.
    irs = "".join(tfx_ir(t) for t in steps.values())
    assert "sqlite" not in irs and str(PROJECT_ROOT) not in irs
    assert f"{IMAGE_PROJECT_ROOT}/schemas/{name}/schema.pbtxt" in tfx_ir(steps["importschemagen"])
    assert all(t["container"]["envFrom"] == [{"configMapRef": {"name": "metadata-grpc-configmap", "optional": True}}]
               for t in steps.values())


@pytest.mark.parametrize("name", DATASETS)
def test_kfp_v2_parses_into_the_pipeline_spec_proto_with_the_same_components(compiled, name):
    path, ids, _ = compiled[name, "kfp-v2"]
    job = json.loads(path.read_text())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == kfp_name(load_spec(name))
    assert job["runtimeConfig"]["gcsOutputDirectory"] == f"{ROOT}/{name}"
    tasks = spec.root.dag.tasks
    for component_id in ids:
        if component_id == "latest_blessed_model_resolver":  # compiled to resolver tasks, no container
            assert any(task.startswith(component_id) for task in tasks)
            continue
        executor = spec.deployment_spec.fields["executors"].struct_value.fields[f"{component_id}_executor"]
        assert executor.struct_value.fields["container"].struct_value.fields["image"].string_value == IMAGE
        assert component_id in tasks
    assert len(tasks) == len(ids) + 1  # the resolver is two tasks (model, blessing)


def test_cluster_config_puts_data_schema_and_outputs_where_pods_reach_them(compiled):
    _, _, config = compiled["churn", "kfp-v1"]
    assert config.pipeline_root == f"{ROOT}/churn"
    assert config.serving_dir_for(load_spec("churn")) == f"{SERVING}/churn"
    assert config.input_base == f"{IMAGE_PROJECT_ROOT}/data/churn"
    assert config.schema_file == f"{IMAGE_PROJECT_ROOT}/schemas/churn/schema.pbtxt"
    assert not config.local_metadata
    assert config.beam_args[0] == "--runner=DirectRunner"


def test_compile_cli_with_uris_and_a_distributed_beam_runner(tmp_path, capsys):
    output = tmp_path / "churn.yaml"
    code = main(["compile", "--dataset", "churn", "--target", "kfp-v1", "--output", str(output), "--image", IMAGE,
                 "--pipeline-root", ROOT, "--serving-dir", SERVING, "--data-dir", "s3://kit-data/churn",
                 "--schema-uri", "gs://kit-bucket/schemas/churn.pbtxt", "--beam-runner", "DataflowRunner",
                 "--beam-arg=--project=p1", "--beam-arg=--region=europe-west1",
                 "--beam-arg=--temp_location=gs://kit-bucket/tmp"])
    assert code == 0, capsys.readouterr().err
    irs = output.read_text()
    for expected in ("--runner=DataflowRunner", f"--sdk_container_image={IMAGE}", "--project=p1",
                     "s3://kit-data/churn", "gs://kit-bucket/schemas/churn.pbtxt", f"{SERVING}/churn"):
        assert expected in irs


def test_volume_mounts_a_shared_claim_on_every_kfp_v1_step(tmp_path):
    spec = load_spec("churn")
    options = ClusterOptions(image=IMAGE, volume="tfx-pvc")
    path = compile_pipeline(spec, cluster_config(spec, PipelineConfig(), options), options, tmp_path / "churn.yaml")
    steps = [t for t in yaml.safe_load(path.read_text())["spec"]["templates"] if "container" in t]
    assert all(t["container"]["volumeMounts"] == [{"mountPath": "/mnt/tfx", "name": "tfx-shared"}] for t in steps)
    assert all(t["volumes"] == [{"name": "tfx-shared", "persistentVolumeClaim": {"claimName": "tfx-pvc"}}]
               for t in steps)
    with pytest.raises(UsageError, match="gs:// URIs"):
        ClusterOptions(target="kfp-v2", volume="tfx-pvc")


def test_dockerfile_base_image_matches_the_installed_tfx_and_the_compiled_layout():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", dockerfile, re.M) == [f"tensorflow/tfx:{importlib.metadata.version('tfx')}"]
    assert re.findall(r"^WORKDIR (\S+)", dockerfile, re.M) == [IMAGE_PROJECT_ROOT]
    assert "pip install --no-cache-dir --no-deps -e ." in dockerfile


@pytest.mark.parametrize("given, expected", [
    ("0 0 3 * * *", "0 0 3 * * *"), ("0 */30 9-17 ? * MON-FRI", "0 */30 9-17 ? * MON-FRI"),
    ("*/5 * * * *", "0 */5 * * * *"), ("@daily", "@daily"), ("@every 6h30m", "@every 6h30m")])
def test_cron_accepts_kfp_six_fields_and_prefixes_five(given, expected):
    cron, note = kfp_cron(given)
    assert cron == expected
    assert (note is not None) == (len(given.split()) == 5)


@pytest.mark.parametrize("bad, reason", [
    ("0 0 3 * *  * *", "7 fields"), ("61 * * * * *", "outside 0-59"), ("0 0 25 * * *", "outside 0-23"),
    ("0 0 3 * * FUNDAY", "not a number or name"), ("0 0 3 10-2 * *", "runs backwards"), ("@fortnightly", "descriptor"),
    ("0 0 3 * */0 *", "positive number"), ("? * * * * *", "only allowed")])
def test_cron_rejects_what_kfp_would(bad, reason):
    with pytest.raises(UsageError, match=reason):
        kfp_cron(bad)


def test_beam_runner_args_need_what_each_runner_cannot_do_without():
    with pytest.raises(UsageError, match="--project, --region, --temp_location"):
        beam_args_for("DataflowRunner", [], IMAGE)
    with pytest.raises(UsageError, match="unknown Beam runner"):
        beam_args_for("SlowRunner", [], IMAGE)
    with pytest.raises(UsageError, match="--beam-runner"):
        beam_args_for("DirectRunner", ["--runner=FlinkRunner"], IMAGE)
    assert beam_args_for("FlinkRunner", ["--flink_master=jm:8081"], IMAGE) == (
        "--runner=FlinkRunner", "--environment_type=DOCKER", f"--environment_config={IMAGE}", "--flink_master=jm:8081")
    assert beam_args_for("SparkRunner", ["--spark_master_url=spark://m:7077", "--environment_type=EXTERNAL",
                                         "--environment_config=localhost:50000"], IMAGE)[1:] == (
        "--spark_master_url=spark://m:7077", "--environment_type=EXTERNAL", "--environment_config=localhost:50000")


class FakeKfp(http.server.ThreadingHTTPServer):
    """Test double of the KFP v1 REST API (/apis/v1beta1): records requests, answers like KFP 1.8."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), FakeKfpHandler)
        self.requests: list[dict] = []
        self.pipelines: dict[str, str] = {}      # name -> id
        self.reject: set[str] = set()            # request kinds to answer with HTTP 400
        self.host = f"http://127.0.0.1:{self.server_address[1]}"

    def kinds(self) -> list[str]:
        return [r["kind"] for r in self.requests]

    def request(self, kind: str) -> dict:
        return next(r for r in self.requests if r["kind"] == kind)


class FakeKfpHandler(http.server.BaseHTTPRequestHandler):
    ROUTES = {("GET", "/apis/v1beta1/healthz"): "healthz", ("GET", "/apis/v1beta1/pipelines"): "list_pipelines",
              ("POST", "/apis/v1beta1/pipelines/upload"): "upload",
              ("POST", "/apis/v1beta1/pipelines/upload_version"): "upload_version",
              ("GET", "/apis/v1beta1/experiments"): "list_experiments",
              ("POST", "/apis/v1beta1/experiments"): "create_experiment",
              ("POST", "/apis/v1beta1/jobs"): "create_job", ("POST", "/apis/v1beta1/runs"): "create_run"}

    def log_message(self, *args):
        pass

    def handle_request(self, method: str):
        url = urllib.parse.urlparse(self.path)
        kind = self.ROUTES.get((method, url.path), "unknown")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        self.server.requests.append({"kind": kind, "query": query, "body": body})
        if kind in self.server.reject:
            return self.answer({"error": f"{kind} rejected by the test", "code": 3}, status=400)
        if kind == "upload":
            self.server.pipelines[query["name"]] = "pipeline-1"
            return self.answer({"id": "pipeline-1", "name": query["name"],
                                "default_version": {"id": "version-1", "name": query["name"]}})
        answers = {
            "healthz": {"multi_user": False},
            "list_pipelines": {"pipelines": [{"id": i, "name": n} for n, i in self.server.pipelines.items()]},
            "upload_version": {"id": "version-2", "name": query.get("name")},
            "list_experiments": {},
            "create_experiment": {"id": "experiment-1", "name": "churn"},
            "create_job": {"id": "job-1", "name": "churn-recurring"},
            "create_run": {"run": {"id": "run-1", "name": "churn-run"}},
        }
        return self.answer(answers[kind]) if kind in answers else self.answer({"error": "no route"}, status=404)

    def answer(self, payload: dict, status: int = 200):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.handle_request("GET")

    def do_POST(self):
        self.handle_request("POST")


@pytest.fixture
def kfp_api():
    server = FakeKfp()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def schedule_args(compiled, host: str, *extra: str) -> list[str]:
    package = compiled["churn", "kfp-v1"][0]
    return ["schedule", "--dataset", "churn", "--host", host, "--package", str(package), "--timeout", "5", *extra]


def test_schedule_uploads_and_creates_the_recurring_run_with_the_cron(compiled, kfp_api, capsys):
    assert main(schedule_args(compiled, kfp_api.host, "--cron", "30 3 * * *", "--experiment", "nightly")) == 0
    out, err = capsys.readouterr()
    assert "'0 30 3 * * *'" in err  # the 5-field note
    ids = json.loads(out)
    assert ids["pipeline_id"] == "pipeline-1" and ids["version_id"] == "version-1"
    assert ids["recurring_run_id"] == "job-1" and ids["experiment_id"] == "experiment-1"
    # Our reachability probe, then kfp.Client's own calls (create_experiment looks the name up once more).
    assert kfp_api.kinds() == ["healthz", "healthz", "list_pipelines", "upload", "list_experiments",
                               "list_experiments", "create_experiment", "create_job"]
    upload = kfp_api.request("upload")
    assert upload["query"]["name"] == "churn" and b"argoproj.io/v1alpha1" in upload["body"]
    job = json.loads(kfp_api.request("create_job")["body"])
    assert job["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * *"
    assert job["name"] == "churn-recurring" and job["max_concurrency"] == 1 and job["enabled"] is True
    references = {(r["key"]["type"], r["key"]["id"]) for r in job["resource_references"]}
    assert references == {("EXPERIMENT", "experiment-1"), ("PIPELINE_VERSION", "version-1")}
    assert json.loads(kfp_api.request("create_experiment")["body"])["name"] == "nightly"

    # Scheduling again uploads a new version of the existing pipeline.
    kfp_api.requests.clear()
    assert main(schedule_args(compiled, kfp_api.host, "--cron", "0 0 3 * * *")) == 0
    assert "upload_version" in kfp_api.kinds() and "upload" not in kfp_api.kinds()
    assert kfp_api.request("upload_version")["query"]["pipelineid"] == "pipeline-1"
    assert json.loads(capsys.readouterr().out)["version_id"] == "version-2"


def test_rejected_recurring_run_reports_what_was_created(compiled, kfp_api, capsys):
    kfp_api.reject.add("create_job")
    assert main(schedule_args(compiled, kfp_api.host, "--cron", "0 0 3 * * *")) == 1
    err = capsys.readouterr().err
    assert "KFP rejected the request to create recurring run" in err and "HTTP 400" in err
    assert "create_job rejected by the test" in err
    assert f"kfp --endpoint {kfp_api.host} pipeline delete pipeline-1" in err
    assert f"kfp --endpoint {kfp_api.host} experiment delete experiment-1" in err


def test_rejected_upload_leaves_nothing(compiled, kfp_api, capsys):
    kfp_api.reject.add("upload")
    assert main(schedule_args(compiled, kfp_api.host, "--cron", "0 0 3 * * *")) == 1
    err = capsys.readouterr().err
    assert "KFP rejected the request to upload pipeline 'churn' (HTTP 400" in err
    assert "Nothing was created on the cluster." in err


def test_bad_cron_fails_before_any_request(compiled, kfp_api, capsys):
    assert main(schedule_args(compiled, kfp_api.host, "--cron", "0 0 3 * * 9")) == 2
    err = capsys.readouterr().err
    assert "invalid cron expression '0 0 3 * * 9'" in err and "6 fields: SEC MIN HOUR" in err
    assert kfp_api.requests == []


def test_unreachable_host_fails_fast_with_a_clear_error(compiled, capsys):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(schedule_args(compiled, f"http://127.0.0.1:{port}", "--cron", "0 0 3 * * *")) == 1
    err = capsys.readouterr().err
    assert f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port} within 5 s" in err
    assert "Nothing was created on the cluster." in err


def test_silent_host_times_out(compiled, capsys):
    with socket.socket() as sock:  # accepts connections (backlog) but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        host = f"http://127.0.0.1:{sock.getsockname()[1]}"
        args = schedule_args(compiled, host, "--cron", "0 0 3 * * *")
        args[args.index("--timeout") + 1] = "0.5"
        assert main(args) == 1
    assert "cannot reach Kubeflow Pipelines" in capsys.readouterr().err


def test_schedule_dry_run_compiles_and_prints_the_requests_without_network(kfp_api, capsys):
    assert main(["schedule", "--dataset", "churn", "--host", kfp_api.host, "--cron", "@daily", "--dry-run",
                 "--image", IMAGE, "--pipeline-root", ROOT, "--serving-dir", SERVING]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["create_recurring_run"]["cron_expression"] == "@daily"
    assert plan["upload"]["pipeline_name"] == "churn" and plan["package"]["bytes"] > 0
    assert kfp_api.requests == []


def test_submit_starts_one_run_with_the_workflow_inline(compiled, kfp_api, capsys):
    package = compiled["churn", "kfp-v1"][0]
    assert main(["submit", "--dataset", "churn", "--host", kfp_api.host, "--package", str(package)]) == 0
    assert json.loads(capsys.readouterr().out)["run_id"] == "run-1"
    run = json.loads(kfp_api.request("create_run")["body"])
    assert json.loads(run["pipeline_spec"]["workflow_manifest"])["kind"] == "Workflow"
    assert "upload" not in kfp_api.kinds()


@pytest.mark.parametrize("argv, message", [
    (["compile", "--dataset", "nope", "--target", "kfp-v1", "--output", "x.yaml"], "unknown data set 'nope'"),
    (["compile", "--dataset", "churn", "--target", "kfp-v2", "--output", "x.yaml"], "written as .json"),
    (["schedule", "--dataset", "churn", "--host", "kfp.example.com", "--cron", "@daily"], "with its scheme"),
])
def test_bad_input_is_a_usage_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--target", "kfp-v3"), ("--beam-runner", "SlowRunner")])
def test_unknown_target_or_runner_is_rejected_by_the_parser(flag, value, capsys):
    argv = ["compile", "--dataset", "churn", "--target", "kfp-v1", "--output", "x.yaml", flag, value]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err
