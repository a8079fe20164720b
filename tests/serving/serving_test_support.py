"""Helpers shared by the serving tests: the server process, reference answers, waiting."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from serving.client import RestClient
from serving.demo import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
MAX_BODY_BYTES = 200_000  # the shared server's --rest_api_max_body_bytes

# The lecture's unseen customer, restricted to the fixture model's three features.
UNSEEN_CUSTOMER = {"CreditScore": 615, "Geography": "France", "Balance": 20000.0}


@dataclasses.dataclass
class ServerProcess:
    process: subprocess.Popen
    rest_port: int
    grpc_port: int
    log_path: Path

    def rest(self) -> RestClient:
        return RestClient("127.0.0.1", self.rest_port, timeout=60)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(args: list[str], log_path: Path, wait_for: list[str], timeout: float = 180) -> ServerProcess:
    """Run `python -m serving serve` and wait until every model in `wait_for` is AVAILABLE."""
    rest_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "serving", "serve", f"--port={grpc_port}",
               f"--rest_api_port={rest_port}", *args]
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
    server = ServerProcess(process, rest_port, grpc_port, log_path)
    try:
        _wait_available(server, wait_for, timeout)
    except BaseException:
        stop_process(process)  # never leave a server behind a failed fixture
        raise
    return server


def _wait_available(server: ServerProcess, models: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with server.rest() as client:
        for model in models:
            while True:
                if server.process.poll() is not None:
                    pytest.fail(f"server exited with {server.process.returncode}:\n{server.log()}")
                try:
                    client.wait_until_available(model, timeout=1)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"model {model} never became available:\n{server.log()}")


def run_in_process(model, instances: list[dict], signature: str = "serving_default") -> dict:
    import tensorflow as tf

    function = model.signatures[signature]
    specs = function.structured_input_signature[1]
    columns = {name: tf.constant([row[name] for row in instances], dtype=spec.dtype) for name, spec in specs.items()}
    return {name: value.numpy() for name, value in function(**columns).items()}


def assert_server_alive(client: RestClient) -> None:
    answer = client.predict("churn", instances=[UNSEEN_CUSTOMER])
    assert len(answer["predictions"]) == 1


def wait_for(condition, what: str, timeout: float = 60.0, interval: float = 0.2):
    """Poll `condition` until it returns a truthy value (no timing is asserted, only eventuality)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def example_bytes(features: dict) -> bytes:
    """A serialized tf.Example from plain Python values (int -> int64, float -> float, str -> bytes)."""
    import tensorflow as tf

    feature = {}
    for name, value in features.items():
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, int):
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def predict_request(model: str, rows: list[dict], **spec):
    """A gRPC PredictRequest for the churn-like fixture model; `spec` sets ModelSpec fields."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    dtypes = {"CreditScore": tf.int64, "Geography": tf.string, "Balance": tf.float32}
    for name, dtype in dtypes.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto([row[name] for row in rows], dtype=dtype))
    return request


def logged_models_config(models: list[tuple[str, Path, Path, float]]) -> str:
    """A ModelServerConfig text: per (name, base path, log filename prefix, sampling rate), a logged model."""
    return "model_config_list {\n" + "".join(
        f'  config {{\n    name: "{name}" base_path: "{base}"\n    logging_config {{\n'
        f'      log_collector_config {{ filename_prefix: "{prefix}" }}\n'
        f"      sampling_config {{ sampling_rate: {rate} }}\n    }}\n  }}\n"
        for name, base, prefix, rate in models) + "}\n"
