"""Trainer executor that trains on a cluster of workers (MultiWorkerMirroredStrategy).

TFX's Trainer runs `run_fn` once, in its own process. With `--strategy
multi_worker_mirrored` every worker of the cluster must run it, each with a
TF_CONFIG naming the cluster and its own index. This executor writes the Trainer's
inputs, outputs and properties to a plan file and starts one process per worker
on free localhost ports (`python -m components.multi_worker_trainer PLAN`). Each
process is TFX's own GenericExecutor: real FnArgs from the Transform outputs, the
project's `run_fn`, the model built inside the strategy scope. As TensorFlow's
multi-worker guide requires, every worker saves the model but only the chief
(worker 0) saves it to the Trainer's `model` artifact; the others write to a
temporary directory that is deleted. So the model is a Trainer output like any
other, and the Evaluator and Pusher treat it as such.

On Kubeflow the same plan runs on pods: with `hparams.tfjob` set the executor
creates a TFJob whose workers each run the module with the plan
(components/tfjob.py); the training operator sets their TF_CONFIG.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, Any, NamedTuple, Sequence

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import json_utils

from components import tfjob

WORKERS_KEY = "workers"     # in the Trainer's custom_config["hparams"]: how many processes train
TFJOB_KEY = "tfjob"         # in the same hparams: tfjob.TfJobOptions, to start the workers as a Kubeflow TFJob
PLAN_FILE = "cluster_plan.json"
STOP_GRACE_S = 10           # a stopped worker gets this long to exit before it is killed
# google.api_core's notice on Python 3.10, printed by every import of TFX's Google Cloud stack.
QUIET_WARNINGS = "ignore:You are using a non-supported Python version:FutureWarning"
TAIL_LINES = 30             # lines of a failed worker's output kept for the error message


class WorkerFailed(RuntimeError):
    """A worker process exited with an error; the others were stopped."""


def cluster_hparams(exec_properties: dict[str, Any]) -> dict[str, Any]:
    config = json_utils.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
    return config.get("hparams", {})


def write_plan(path: str, input_dict: dict[str, list[types.Artifact]],
               output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
    """What every worker needs to run the Trainer: artifacts as JSON, properties as given."""
    plan = {"input_dict": artifact_utils.jsonify_artifact_dict(input_dict),
            "output_dict": artifact_utils.jsonify_artifact_dict(output_dict),
            "exec_properties": json_utils.dumps(exec_properties)}
    with fileio.open(path, "w") as f:
        f.write(json.dumps(plan, indent=2))


def read_plan(path: str) -> tuple[dict, dict, dict]:
    with fileio.open(path, "r") as f:
        plan = json.loads(f.read())
    return (artifact_utils.parse_artifact_dict(plan["input_dict"]),
            artifact_utils.parse_artifact_dict(plan["output_dict"]),
            json_utils.loads(plan["exec_properties"]))


def tf_config(addresses: Sequence[str], index: int) -> str:
    """TF_CONFIG for worker `index` of a cluster of workers; worker 0 is the chief."""
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}})


class Task(NamedTuple):
    """This process's place in the cluster, from TF_CONFIG."""

    type: str
    index: int
    workers: int     # processes that train (chief and workers)
    chief: bool      # saves the model


def task_of(config_json: str | None) -> Task:
    """Reads TF_CONFIG; no TF_CONFIG is a lone worker. The chief is the `chief` task if the
    cluster has one, else worker 0 (TensorFlow's rule for MultiWorkerMirroredStrategy)."""
    if not config_json:
        return Task("worker", 0, 1, True)
    config = json.loads(config_json)
    task, cluster = config.get("task", {}), config.get("cluster", {})
    task_type, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = bool(cluster.get("chief"))
    chief = task_type == "chief" or (not has_chief and task_type == "worker" and index == 0)
    return Task(task_type, index, len(cluster.get("worker", [])) + len(cluster.get("chief", [])), chief)


def free_ports(count: int) -> list[int]:
    """Distinct ports nobody listens on now (all held open together, so no duplicates)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("localhost", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class LocalCluster:
    """Worker processes on this machine; their output relayed with a `[worker i]` prefix.

    A worker that fails stops the others (a MultiWorkerMirroredStrategy peer would
    otherwise wait for it forever).
    """

    def __init__(self, plan_path: str, workers: int, out: IO[str] = sys.stderr) -> None:
        self.plan_path, self.workers, self.out = plan_path, workers, out
        self.addresses = [f"localhost:{port}" for port in free_ports(workers)]
        self.tails = [collections.deque(maxlen=TAIL_LINES) for _ in range(workers)]
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "components.multi_worker_trainer", self.plan_path]

    def environment(self, index: int) -> dict[str, str]:
        project_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        python_path = os.pathsep.join(p for p in (project_root, os.environ.get("PYTHONPATH")) if p)
        quiet = {} if verbose_logs() else {"PYTHONWARNINGS": QUIET_WARNINGS}
        return {**os.environ, "TF_CONFIG": tf_config(self.addresses, index), "PYTHONPATH": python_path,
                "PYTHONUNBUFFERED": "1", **quiet}

    def _relay(self, index: int, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.tails[index].append(line)
            with self._lock:
                print(f"[worker {index}] {line}", file=self.out, flush=True)

    def run(self) -> None:
        """Starts every worker, waits for all; raises WorkerFailed when one fails."""
        self.say(f"starting {self.workers} workers: {', '.join(self.addresses)} (worker 0 is the chief)")
        processes: list[subprocess.Popen] = []
        relays = []
        try:
            for index in range(self.workers):
                process = subprocess.Popen(self.command(), env=self.environment(index), stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True, errors="replace")
                processes.append(process)
                relay = threading.Thread(target=self._relay, args=(index, process.stdout), daemon=True)
                relay.start()
                relays.append(relay)
            failed = self._wait(processes)
        finally:
            self._stop(processes)
            for relay in relays:
                relay.join(timeout=STOP_GRACE_S)
        if failed is not None:
            index, code = failed
            raise WorkerFailed(f"worker {index} of {self.workers} exited with code {code}: {self.last_error(index)}; "
                               f"the other workers were stopped")
        self.say(f"all {self.workers} workers finished")

    def _wait(self, processes: list[subprocess.Popen]) -> tuple[int, int] | None:
        """The first (index, exit code) of a failed worker, or None once all succeeded."""
        while True:
            codes = [process.poll() for process in processes]
            for index, code in enumerate(codes):
                if code not in (None, 0):
                    return index, code
            if all(code == 0 for code in codes):
                return None
            time.sleep(0.2)

    def _stop(self, processes: list[subprocess.Popen]) -> None:
        running = [p for p in processes if p.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def last_error(self, index: int) -> str:
        """The worker's `error: ...` line (see main), else its last line."""
        lines = [line.strip() for line in self.tails[index] if line.strip()]
        errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
        return (errors or lines or ["no output"])[-1]

    def say(self, message: str) -> None:
        with self._lock:
            print(f"[cluster] {message}", file=self.out, flush=True)


class Executor(trainer_executor.GenericExecutor):
    """Trains with `hparams.workers` worker processes: local ones, or a TFJob's pods when `hparams.tfjob`
    is set (Kubeflow); one worker trains in process as TFX's Trainer does."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        hparams = cluster_hparams(exec_properties)
        workers = int(hparams.get(WORKERS_KEY, 1))
        if workers < 2:
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        model_run = artifact_utils.get_single_uri(output_dict[standard_component_specs.MODEL_RUN_KEY])
        fileio.makedirs(model_run)
        plan = os.path.join(model_run, PLAN_FILE)
        write_plan(plan, input_dict, output_dict, exec_properties)
        if TFJOB_KEY in hparams:
            options = tfjob.TfJobOptions(**hparams[TFJOB_KEY])
            manifest = tfjob.tfjob_manifest(tfjob.job_name(plan), options.namespace or tfjob.own_namespace(), plan,
                                            workers, options)
            tfjob.run_tfjob(manifest, tfjob.in_cluster_api(), say=lambda line: print(f"[cluster] {line}", flush=True))
        else:
            LocalCluster(plan, workers).run()
        serving_dir = self._GetFnArgs(input_dict, output_dict, exec_properties).serving_model_dir
        if not fileio.exists(serving_dir):
            raise RuntimeError(f"the chief (worker 0) finished without writing the model to {serving_dir}")


def worker_outputs(output_dict: dict[str, list[types.Artifact]], task: Task,
                   scratch: str) -> dict[str, list[types.Artifact]]:
    """This worker's outputs: its own model_run subfolder (e.g. `worker-1`); the model only on the chief."""
    model_run = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_RUN_KEY])
    model_run.uri = os.path.join(model_run.uri, f"{task.type}-{task.index}")
    if not task.chief:
        model = artifact_utils.get_single_instance(output_dict[standard_component_specs.MODEL_KEY])
        model.uri = scratch
    return output_dict


def run_worker(plan_path: str) -> None:
    """One worker: TFX's GenericExecutor with this worker's outputs (TF_CONFIG says which worker)."""
    task = task_of(os.environ.get("TF_CONFIG"))
    input_dict, output_dict, exec_properties = read_plan(plan_path)
    scratch = tempfile.mkdtemp(prefix=f"{task.type}-{task.index}-model-")
    print(f"{task.type} {task.index} of {task.workers}{' (chief)' if task.chief else ''}: training; model to "
          f"{'the Trainer output' if task.chief else 'a temporary directory, deleted after'}", flush=True)
    try:
        trainer_executor.GenericExecutor().Do(
            input_dict, worker_outputs(output_dict, task, scratch), exec_properties)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{task.type} {task.index}: done", flush=True)


def verbose_logs() -> bool:
    """`python -m pipeline --verbose` turns TF's C++ logs on; workers then show everything too."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") == "0"


def one_line(error: Exception) -> str:
    """The line of an error message that says what went wrong (TF errors add graph and stack lines)."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "File ", "[[",
             "The error could be from", "Additional GRPC error", "{")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    return (useful or lines or [type(error).__name__])[0]


def configure_logging(verbose: bool) -> None:
    """Progress lines (`progress.*` loggers: one per epoch), warnings and errors; everything with --verbose."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname).1s %(message)s",
                        stream=sys.stdout, force=True)
    logging.getLogger("progress").setLevel(logging.INFO)
    if not verbose:  # TF's deprecation notices, twice per worker; its errors still show
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if verbose:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.INFO)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m components.multi_worker_trainer PLAN_JSON (written by the Trainer)", file=sys.stderr)
        return 2
    verbose = verbose_logs()
    configure_logging(verbose)
    try:
        run_worker(argv[0])
    except Exception as e:  # noqa: BLE001 - one line for the launcher's error message; trace with --verbose
        if verbose:
            raise
        print(f"error: {type(e).__name__}: {one_line(e)}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
