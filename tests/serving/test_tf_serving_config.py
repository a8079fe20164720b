"""Config reload, TF Serving's flags, warm-up replay and versions coming and going, on TF Serving's test models.

Ported from tensorflow/serving's tensorflow_model_server_test.py (testBadModelConfig,
testModelConfigReload, testModelConfigReloadWithZeroPollPeriod, testGoodGrpcChannelArgs)
and server_core.cc's version-label rules, each against a real server process.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_log_pb2, regression_pb2)

from serving.demo import stop_process
from tests.serving.serving_test_support import REPO, ServerProcess, start_server, wait_for
from tests.serving.test_tf_serving_compat import HALF_PLUS_THREE, HALF_PLUS_TWO, TESTDATA, TWO_VERSIONS, call, post


def config_text(models: dict[str, Path], labels: str = "") -> str:
    entries = "".join(f'  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" {labels} }}\n'
                      for name, path in models.items())
    return f"model_config_list {{\n{entries}}}\n"


def warmup_file(path: Path, records: list[prediction_log_pb2.PredictionLog]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record.SerializeToString())


def predict_log(inputs: dict[str, list[float]]) -> prediction_log_pb2.PredictionLog:
    record = prediction_log_pb2.PredictionLog()
    request = record.predict_log.request
    request.model_spec.name = "ignored"
    for name, values in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values, shape=[len(values), 1], dtype=tf.float32))
    return record


def regress_log() -> prediction_log_pb2.PredictionLog:
    record = prediction_log_pb2.PredictionLog()
    request: regression_pb2.RegressionRequest = record.regress_log.request
    request.model_spec.signature_name = "regress_x_to_y"
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(1.0)
    return record


@pytest.fixture(scope="module")
def polled(tmp_path_factory):
    """Config re-read every second; a model with warm-up records, one whose warm-up fails, one that changes."""
    root = tmp_path_factory.mktemp("polled")
    warm, broken, moving = root / "warm", root / "broken", root / "moving"
    for target in (warm, broken, moving):
        shutil.copytree(HALF_PLUS_TWO, target)
    warmup_file(warm / "00000123" / "assets.extra" / "tf_serving_warmup_requests",
                [predict_log({"x": [1.0, 2.0]}), regress_log()])
    warmup_file(broken / "00000123" / "assets.extra" / "tf_serving_warmup_requests",
                [predict_log({"not_an_input": [1.0]})])
    config = root / "models.config"
    config.write_text(config_text({"half_plus_two": HALF_PLUS_TWO, "warm": warm, "broken": broken,
                                   "moving": moving}))
    server = start_server(
        [f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1",
         "--file_system_poll_wait_seconds=0.3", "--num_request_iterations_for_warmup=2",
         "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
         "--an_unknown_flag=1"],
        root / "server.log", wait_for=["half_plus_two", "warm", "moving"])
    server.config = config
    server.moving = moving
    yield server
    stop_process(server.process)
    assert server.process.returncode == 0, server.log()


def test_unknown_flag_is_reported_as_tf_serving_reports_it_and_the_server_runs(polled):
    assert "unknown argument: --an_unknown_flag=1" in polled.log()
    assert post(polled, "/v1/models/half_plus_two:predict", {"instances": [2.0]}) == (200, {"predictions": [3.0]})


def test_warmup_records_are_replayed_on_load(polled):
    log = polled.log()
    assert "Starting to read warmup data for model at" in log and "num_request_iterations: 2" in log
    assert "Number of warmup records read: 2." in log
    assert post(polled, "/v1/models/warm:predict", {"instances": [2.0]}) == (200, {"predictions": [3.0]})


def test_a_failing_warmup_record_refuses_the_version(polled):
    status, answer = call(polled, "GET", "/v1/models/broken")
    assert status == 200
    [version] = answer["model_version_status"]
    assert version["state"] == "END"
    assert "input size does not match signature" in version["status"]["error_message"]
    assert post(polled, "/v1/models/broken:predict", {"instances": [2.0]})[0] == 404


def test_a_version_unloaded_mid_traffic_fails_no_request(polled):
    """Requests pinned to version 123 while 124 arrives (latest policy unloads 123): each is served by 123
    or told TF Serving's NOT_FOUND; none fails otherwise, and unpinned requests never fail."""
    stop, outcomes, lock = threading.Event(), [], threading.Lock()

    def load(path: str) -> None:
        while not stop.is_set():
            result = post(polled, path, {"instances": [2.0]})
            with lock:
                outcomes.append((path, result))

    threads = [threading.Thread(target=load, args=(path,)) for path in
               ["/v1/models/moving/versions/123:predict", "/v1/models/moving:predict"] * 2]
    for thread in threads:
        thread.start()
    try:
        shutil.copytree(TWO_VERSIONS / "00000124", polled.moving / ".staging-124")
        (polled.moving / ".staging-124").rename(polled.moving / "00000124")
        wait_for(lambda: call(polled, "GET", "/v1/models/moving/versions/124")[1]
                 .get("model_version_status", [{}])[0].get("state") == "AVAILABLE", "version 124")
        wait_for(lambda: any(r[0] == 404 for p, r in outcomes if "versions/123" in p), "version 123 unloaded")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    not_found = {"error": "Servable not found for request: Specific(moving, 123)"}
    for path, (status, answer) in outcomes:
        if "versions/123" in path:
            assert (status, answer) in [(200, {"predictions": [3.0]}), (404, not_found)], answer
        else:
            assert (status, answer) == (200, {"predictions": [3.0]}), answer
    assert sum(1 for p, r in outcomes if r[0] == 200 and "versions/123" in p) > 0


def test_model_config_reload_by_polling(polled):
    polled.config.write_text(config_text({"half_plus_three": HALF_PLUS_THREE}))
    wait_for(lambda: post(polled, "/v1/models/half_plus_three:predict", {"instances": [2.0]})[0] == 200,
             "half_plus_three after the config file changed")
    assert post(polled, "/v1/models/half_plus_three:predict", {"instances": [2.0]}) == (200, {"predictions": [4.0]})
    wait_for(lambda: post(polled, "/v1/models/half_plus_two:predict", {"instances": [2.0]})[0] == 404,
             "half_plus_two gone")


@pytest.fixture(scope="module")
def unpolled(tmp_path_factory) -> ServerProcess:
    """Polling off; a version label that names a version not on disk, allowed by the flag."""
    root = tmp_path_factory.mktemp("unpolled")
    config = root / "models.config"
    config.write_text(config_text({"half_plus_two": HALF_PLUS_TWO},
                                  labels='version_labels { key: "future" value: 999 }'))
    server = start_server([f"--model_config_file={config}", "--allow_version_labels_for_unavailable_models"],
                          root / "server.log", wait_for=["half_plus_two"])
    server.config = config
    yield server
    stop_process(server.process)
    assert server.process.returncode == 0, server.log()


def test_label_for_an_unavailable_version_is_allowed_by_the_flag(unpolled):
    status, answer = post(unpolled, "/v1/models/half_plus_two/labels/future:predict", {"instances": [2.0]})
    assert (status, answer) == (404, {"error": "Servable not found for request: Specific(half_plus_two, 999)"})


def test_zero_poll_period_keeps_the_config_until_a_reload_rpc(unpolled):
    unpolled.config.write_text(config_text({"half_plus_three": HALF_PLUS_THREE}))
    time.sleep(2)  # TF Serving's test: give a poller the chance it must not take
    assert post(unpolled, "/v1/models/half_plus_two:predict", {"instances": [2.0]}) == (200, {"predictions": [3.0]})
    with unpolled.channel() as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        request = model_management_pb2.ReloadConfigRequest()
        model = request.config.model_config_list.config.add(name="half_plus_three", base_path=str(HALF_PLUS_THREE),
                                                             model_platform="tensorflow")
        stub.HandleReloadConfigRequest(request, timeout=120)
        assert post(unpolled, "/v1/models/half_plus_three:predict", {"instances": [2.0]}) == \
            (200, {"predictions": [4.0]})
        model.version_labels["stable"] = 999  # not available, but new: allowed by the flag
        stub.HandleReloadConfigRequest(request, timeout=120)
        model.model_platform = "pytorch"
        with pytest.raises(grpc.RpcError) as error:
            stub.HandleReloadConfigRequest(request, timeout=120)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_label_for_an_unavailable_version_stops_startup_without_the_flag(tmp_path):
    config = tmp_path / "models.config"
    config.write_text(config_text({"half_plus_two": HALF_PLUS_TWO},
                                  labels='version_labels { key: "future" value: 999 }'))
    result = run_server([f"--model_config_file={config}"])
    assert result.returncode != 0
    assert ("Request to assign label to version 999 of model half_plus_two, which is not currently available "
            "for inference") in result.stdout


def test_bad_model_config_is_refused_with_the_protobuf_parse_message():
    result = run_server([f"--model_config_file={TESTDATA / 'bad_model_config.txt'}"])
    assert result.returncode != 0
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in result.stdout


def test_flag_value_that_does_not_parse_exits_like_tf_servings_flag_parser():
    result = run_server(["--port=abc", "--model_base_path=/nowhere"])
    assert result.returncode == 255
    assert "Couldn't interpret value abc for flag port." in result.stdout


def run_server(args: list[str]) -> subprocess.CompletedProcess:
    """A server start that is expected to fail: its exit code and combined output."""
    return subprocess.run([sys.executable, "-m", "serving", "serve", "--port=0", "--rest_api_port=0", *args],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
