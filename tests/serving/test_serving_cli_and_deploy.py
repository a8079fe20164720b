"""The CLI, the demo helper and the deployment files."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from serving.batching import BatchingParameters, parse_batching_parameters
from serving.config import VersionPolicy, load_model_config_file
from serving.demo import serve_and_query
from tests.serving.serving_test_support import REPO, UNSEEN_CUSTOMER

DEPLOY = REPO / "serving" / "deploy"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "serving", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("command,flags", [
    ([], ["serve", "query"]),
    (["serve"], ["--port", "--rest_api_port", "--model_config_file", "--file_system_poll_wait_seconds",
                 "--enable_batching", "--rest_api_max_body_bytes", "--host"]),
    (["query"], ["--model", "--instance", "--signature_name", "--label"]),
])
def test_help(command, flags):
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    for flag in flags:
        assert flag in result.stdout


def test_serve_needs_exactly_one_model_source():
    result = run_cli("serve")
    assert result.returncode == 2
    assert "exactly one of --model_base_path or --model_config_file" in result.stderr


def test_query_prints_the_answer(server):
    result = run_cli("query", "--model", "churn", "--instance", json.dumps(UNSEEN_CUSTOMER),
                     "--rest_api_port", str(server.rest_port))
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["predictions"][0]) == {"probabilities", "class_ids", "classes", "probability"}


def test_query_reports_server_errors(server):
    result = run_cli("query", "--model", "nosuchmodel", "--instance", "{}", "--rest_api_port", str(server.rest_port))
    assert result.returncode == 1
    assert "HTTP 404" in result.stderr and "Servable not found" in result.stderr


def test_serve_and_query_starts_queries_and_stops_a_server(exports):
    answer = serve_and_query("churn", str(exports.models / "churn"), UNSEEN_CUSTOMER)
    prediction = answer["predictions"][0]
    assert 0.0 <= prediction["probability"] <= 1.0
    assert prediction["classes"] in ("0", "1")


def test_model_config_file_of_the_deployment():
    entries = load_model_config_file(str(DEPLOY / "models.config"))
    assert [(e.name, e.base_path, e.policy) for e in entries] == [("churn", "/models/churn", VersionPolicy())]


def test_batching_parameters_of_the_deployment():
    params = parse_batching_parameters((DEPLOY / "batching.config").read_text())
    assert params == BatchingParameters(max_batch_size=64, batch_timeout_micros=0, num_batch_threads=2)


def test_docker_compose_runs_tf_serving_on_the_pushed_models():
    service = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["tf-serving"]
    assert service["image"].startswith("tensorflow/serving:")
    assert {"127.0.0.1:8500:8500", "127.0.0.1:8501:8501"} == set(service["ports"])
    assert "--model_config_file=/config/models.config" in service["command"]
    assert any(volume.startswith("../../serving_models:/models") for volume in service["volumes"])


def test_kubernetes_manifests():
    k8s = DEPLOY / "k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    docs = {yaml.safe_load((k8s / name).read_text())["kind"]: yaml.safe_load((k8s / name).read_text())
            for name in kustomization["resources"]}
    assert set(docs) == {"PersistentVolumeClaim", "ConfigMap", "Deployment", "Service"}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("tensorflow/serving:")
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    assert {p["port"] for p in docs["Service"]["spec"]["ports"]} == {8500, 8501}
    config = docs["ConfigMap"]["data"]
    assert config["models.config"] == (DEPLOY / "models.config").read_text()
    assert config["batching.config"] == (DEPLOY / "batching.config").read_text()


def test_version_policies_select_versions():
    available = [1, 2, 3, 5]
    assert VersionPolicy().select(available) == {5}
    assert VersionPolicy(num_versions=2).select(available) == {3, 5}
    assert VersionPolicy(kind="all").select(available) == {1, 2, 3, 5}
    assert VersionPolicy(kind="specific", versions=frozenset({2, 4})).select(available) == {2}
