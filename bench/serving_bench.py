"""REST serving benchmark: requests/s and p50/p99 at concurrency 1, 8 and 32 vs the in-process floor.

Starts `python -m serving serve --enable_batching` on free local ports over
`--model-base-path`, sends one-instance predict requests from N client threads
(one keep-alive connection each), and compares with calling the same SavedModel
signature in-process, single-threaded: the cost the server adds on top. A second
server logs every request (sampling rate 1.0); the two are measured in
alternating rounds (off, on, off, on, ...), so a change in the machine's load
hits both alike, and the figures are the medians over rounds. Logging counts as
"not measurably slower" when, at every concurrency, the median with logging is
within the round-to-round spread of the runs without it. After each logged
level the bench waits for the log writer process to go idle, so its catching
up never overlaps the next measurement; its CPU per request is reported too.

    python bench/serving_bench.py --model-base-path serving_models/churn --model-name churn
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from serving.client import RestClient  # noqa: E402 - needs the repo on sys.path
from serving.demo import free_port, stop_process  # noqa: E402

# The lecture's unseen customer; features a model does not take are dropped.
UNSEEN_CUSTOMER = {"CreditScore": 615, "Geography": "France", "Gender": "Male", "Age": 22, "Tenure": 5,
                   "Balance": 20000, "NumOfProducts": 5, "HasCrCard": 1, "IsActiveMember": 1,
                   "EstimatedSalary": 60000}
WARM_UP_CALLS = 20  # per client thread and level, before the clock starts
DUMMY_BY_DTYPE = {"DT_STRING": "", "DT_FLOAT": 0.0, "DT_DOUBLE": 0.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-base-path", required=True, help="directory with <version>/saved_model.pb")
    parser.add_argument("--model-name", default="churn", help="model name to serve and query (default churn)")
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "serving_churn.json"))
    parser.add_argument("--requests", type=int, default=3000, help="measured requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds without/with logging")
    parser.add_argument("--signature-name", default="serving_default")
    parser.add_argument("--note", default="", help="what else ran on the machine, recorded with the figures")
    return parser.parse_args()


def instance_for(metadata: dict, signature: str) -> dict:
    """The unseen customer restricted to (and completed for) the signature's inputs."""
    inputs = metadata["metadata"]["signature_def"]["signature_def"][signature]["inputs"]
    return {name: UNSEEN_CUSTOMER.get(name, DUMMY_BY_DTYPE.get(info["dtype"], 0)) for name, info in inputs.items()}


def percentiles(latencies: list[float]) -> dict:
    values = np.array(latencies) * 1000.0
    return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3)}


def in_process_floor(version_dir: str, signature: str, instance: dict, requests: int) -> dict:
    """One-instance calls of the signature in this process, one thread: the floor REST cannot beat."""
    import tensorflow as tf

    function = tf.saved_model.load(version_dir).signatures[signature]
    specs = function.structured_input_signature[1]
    tensors = {name: tf.constant([instance[name]], dtype=spec.dtype) for name, spec in specs.items()}
    for _ in range(50):
        function(**tensors)
    latencies = []
    started = time.perf_counter()
    for _ in range(requests):
        begin = time.perf_counter()
        function(**tensors)
        latencies.append(time.perf_counter() - begin)
    elapsed = time.perf_counter() - started
    return {"requests": requests, "requests_per_s": round(requests / elapsed, 1), **percentiles(latencies)}


class RawRestConnection:
    """A minimal keep-alive HTTP/1.1 client sending one pre-built request.

    The benchmark measures the server; http.client's own per-request cost would
    otherwise take much of the second core and cap the figures at high concurrency.
    """

    def __init__(self, port: int, path: str, body: bytes):
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=60)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        self._pending = b""

    def call(self) -> dict:
        """Send the request, read the whole answer; raises on a non-200 status."""
        self._socket.sendall(self._request)
        data = self._pending
        while b"\r\n\r\n" not in data:
            data += self._receive()
        head, data = data.split(b"\r\n\r\n", 1)
        length = int(re.search(rb"content-length:\s*(\d+)", head, re.I).group(1))
        while len(data) < length:
            data += self._receive()
        body, self._pending = data[:length], data[length:]
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def _receive(self) -> bytes:
        chunk = self._socket.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk

    def close(self) -> None:
        self._socket.close()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rest_level(port: int, model: str, signature: str, instance: dict, concurrency: int, requests: int,
               server_pid: int) -> dict:
    """`requests` predicts spread over `concurrency` threads, each with its own keep-alive connection.

    Besides rates and latencies, it reports the server's CPU time per request: unlike
    requests/s, that figure barely moves when other work shares the machine.
    """
    per_thread = max(1, requests // concurrency)
    body = json.dumps({"signature_name": signature, "instances": [instance]}).encode()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    start_line = threading.Barrier(concurrency + 1)

    def client_thread(index: int) -> None:
        connection = RawRestConnection(port, f"/v1/models/{model}:predict", body)
        try:
            for _ in range(WARM_UP_CALLS):  # connect and warm up before the clock starts
                connection.call()
            start_line.wait()
            for _ in range(per_thread):
                begin = time.perf_counter()
                try:
                    connection.call()
                except Exception as error:  # noqa: BLE001 - counted, the run goes on
                    errors.append(repr(error))
                latencies[index].append(time.perf_counter() - begin)
        finally:
            connection.close()

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start_line.wait()
    started, cpu_before = time.perf_counter(), process_cpu_seconds(server_pid)
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    server_cpu = process_cpu_seconds(server_pid) - cpu_before
    flat = [value for values in latencies for value in values]
    return {"concurrency": concurrency, "requests": len(flat), "errors": len(errors),
            "requests_per_s": round(len(flat) / elapsed, 1), **percentiles(flat),
            "server_cpu_ms_per_request": round(1000 * server_cpu / len(flat), 3)}


def logging_config(model_name: str, base_path: str, prefix: str) -> str:
    """A ModelServerConfig that logs every request of the model (sampling rate 1.0)."""
    return (f'model_config_list {{ config {{ name: "{model_name}" base_path: "{base_path}" '
            f'logging_config {{ log_collector_config {{ filename_prefix: "{prefix}" }} '
            f"sampling_config {{ sampling_rate: 1.0 }} }} }} }}\n")


@contextlib.contextmanager
def running_server(args: argparse.Namespace, model_args: list[str]):
    """A `python -m serving serve` process with `model_args`: yields (process, REST port, model metadata)."""
    rest_port, grpc_port = free_port(), free_port()
    command = [sys.executable, "-m", "serving", "serve", *model_args, f"--port={grpc_port}",
               f"--rest_api_port={rest_port}", "--enable_batching", "--file_system_poll_wait_seconds=0",
               "--log_level=WARNING"]
    with tempfile.TemporaryFile(mode="w+") as log_file:
        server = subprocess.Popen(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            with RestClient("127.0.0.1", rest_port) as client:
                client.wait_until_available(args.model_name, timeout=300)
                metadata = client.model_metadata(args.model_name)
            yield server, rest_port, metadata
        except Exception:
            log_file.seek(0)
            print(log_file.read()[-3000:], file=sys.stderr)
            raise
        finally:
            stop_process(server)


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (Linux /proc): the request-log writer of a logging server."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def children_cpu_seconds(pid: int) -> float:
    return sum(process_cpu_seconds(child) for child in child_pids(pid))


def wait_until_idle(pid: int, quiet_s: float = 0.5, timeout_s: float = 300.0) -> float:
    """Wait until the children of `pid` (the log writer) use no CPU for `quiet_s`; the seconds they were busy."""
    began = time.monotonic()
    last, last_busy = children_cpu_seconds(pid), began
    while time.monotonic() - began < timeout_s:
        time.sleep(quiet_s)
        now = children_cpu_seconds(pid)
        if now == last:
            break
        last, last_busy = now, time.monotonic()
    return last_busy - began


def median_level(rounds: list[dict]) -> dict:
    """Per-figure medians over rounds of one concurrency level, with the rounds kept."""
    figures = [key for key in rounds[0] if key not in ("concurrency", "requests", "errors")]
    median = {key: round(float(np.median([level[key] for level in rounds])), 3) for key in figures}
    return {"concurrency": rounds[0]["concurrency"], "requests": sum(level["requests"] for level in rounds),
            "errors": sum(level["errors"] for level in rounds), **median,
            "requests_per_s_rounds": [level["requests_per_s"] for level in rounds]}


def count_records(folder: str) -> int:
    import tensorflow as tf

    return sum(1 for path in Path(folder).glob("*.tfrecord") for _ in tf.data.TFRecordDataset(str(path)))


def main() -> int:
    args = parse_args()
    base_path = os.path.abspath(args.model_base_path)
    versions = sorted(int(name) for name in os.listdir(base_path) if name.isdigit())
    if not versions:
        print(f"no <version>/ directories under {base_path}", file=sys.stderr)
        return 1
    load_before = round(os.getloadavg()[0], 2)
    plain: dict[int, list[dict]] = {concurrency: [] for concurrency in args.concurrency}
    logged: dict[int, list[dict]] = {concurrency: [] for concurrency in args.concurrency}
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as servers:
        config = Path(scratch, "models.config")
        config.write_text(logging_config(args.model_name, base_path, os.path.join(scratch, "logs", "requests")))
        server, port, metadata = servers.enter_context(
            running_server(args, [f"--model_name={args.model_name}", f"--model_base_path={base_path}"]))
        logging_server, logging_port, _ = servers.enter_context(
            running_server(args, [f"--model_config_file={config}"]))
        instance = instance_for(metadata, args.signature_name)
        with RestClient("127.0.0.1", logging_port) as client:  # a first logged call starts the log writer
            client.predict(args.model_name, instances=[instance], signature_name=args.signature_name)
        wait_until_idle(logging_server.pid)
        for round_number in range(1, args.rounds + 1):
            for concurrency in args.concurrency:
                level = rest_level(port, args.model_name, args.signature_name, instance, concurrency,
                                   args.requests, server.pid)
                plain[concurrency].append(level)
                print(f"round {round_number}, REST: {level}", flush=True)
                writer_cpu = children_cpu_seconds(logging_server.pid)
                level = rest_level(logging_port, args.model_name, args.signature_name, instance, concurrency,
                                   args.requests, logging_server.pid)
                # The writer runs on idle CPU only: what it could not write during the level, it writes now.
                # Its catching up must not overlap the next measurement.
                level["log_writer_catch_up_s"] = round(wait_until_idle(logging_server.pid), 1)
                writer_cpu = children_cpu_seconds(logging_server.pid) - writer_cpu
                logged_calls = level["requests"] + WARM_UP_CALLS * concurrency
                level["log_writer_cpu_ms_per_request"] = round(1000 * writer_cpu / logged_calls, 3)
                logged[concurrency].append(level)
                print(f"round {round_number}, REST, request logging on: {level}", flush=True)
        stop_process(logging_server)  # the writer finishes its files before the server exits
        records = count_records(os.path.join(scratch, "logs"))
    print(f"request log records written: {records}", flush=True)
    levels = [median_level(plain[concurrency]) for concurrency in args.concurrency]
    logged_levels = [median_level(logged[concurrency]) for concurrency in args.concurrency]
    version = int(metadata["model_spec"]["version"])
    floor = in_process_floor(os.path.join(base_path, str(version)), args.signature_name, instance, args.requests)
    print(f"in-process: {floor}", flush=True)
    logging_cost = {}
    for off, on in zip(levels, logged_levels):
        spread = max(off["requests_per_s_rounds"]) - min(off["requests_per_s_rounds"])
        difference = on["requests_per_s"] - off["requests_per_s"]
        logging_cost[str(off["concurrency"])] = {
            "requests_per_s_difference": round(difference, 1),
            "relative": round(difference / off["requests_per_s"], 4),
            "round_to_round_spread_without_logging": round(spread, 1),
            "within_spread": abs(difference) <= spread}

    import tensorflow as tf

    by_concurrency = {level["concurrency"]: level for level in levels}
    targets = {}
    if 1 in by_concurrency:
        targets["rest_p50_c1_within_1ms_of_in_process"] = by_concurrency[1]["p50_ms"] <= floor["p50_ms"] + 1.0
    if 32 in by_concurrency:
        targets["rest_rps_c32_at_least_2x_in_process_rate"] = (
            by_concurrency[32]["requests_per_s"] >= 2 * floor["requests_per_s"])
        targets["rest_p99_c32_under_50ms"] = by_concurrency[32]["p99_ms"] < 50.0
    targets["request_logging_not_measurably_slower"] = all(cost["within_spread"] for cost in logging_cost.values())
    result = {
        "model_name": args.model_name,
        "model_base_path": base_path,
        "model_version": version,
        "signature_name": args.signature_name,
        "instance": instance,
        "server": {"command": "python -m serving serve --enable_batching (HTTP layer: serving/http_server.py)",
                   "client": "REST over one keep-alive connection per client thread (minimal raw-socket "
                             "client), one instance per request, client and server on this machine"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
                    # Other work on the machine skews every figure: keep the context with them.
                    "load_average_1m_before": load_before, "load_average_1m_after": round(os.getloadavg()[0], 2),
                    "note": args.note},
        "in_process": floor,
        "rest": levels,
        "rounds": args.rounds,
        "rest_request_logging": {
            "config": "logging_config with sampling_rate 1.0 (every request logged); the log writer process "
                      "runs at idle CPU priority (SCHED_IDLE)",
            "records_written": records,
            "requests_sent": 1 + sum(level["requests"] + WARM_UP_CALLS * level["concurrency"]  # warm-ups too
                                     for rounds in logged.values() for level in rounds),
            "levels": logged_levels,
            "cost": logging_cost,
        },
        "targets": targets,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")
    return 0 if all(level["errors"] == 0 for level in levels + logged_levels) else 1


if __name__ == "__main__":
    sys.exit(main())
