"""Distribution strategies for the Trainer; models are built under `strategy.scope()`."""
from __future__ import annotations

import glob
import importlib.util
import os
import socket
import threading
from typing import Callable, TypeVar

import tensorflow as tf

from specs.dataset import STRATEGIES

T = TypeVar("T")
TPU_CONNECT_TIMEOUT_S = 30


class StrategyError(RuntimeError):
    """The requested strategy cannot run on this machine."""


def make_strategy(name: str = "default", tpu: str | None = None) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    raise StrategyError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def shard_by_example(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Multi-worker input: every worker reads all files and keeps its share of the batches.

    TF's default shards by file, and Transform writes one file per split: with
    fewer files than workers, training fails. Other strategies ignore the option.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _tpu_strategy(address: str | None) -> tf.distribute.Strategy:
    """Connects to a TPU or fails at once with what to do (never hangs).

    No address: $TPU_NAME, or a TPU attached to this VM (`--tpu local`), else
    an error, without contacting the GCE metadata server. `grpc://HOST:PORT`: the port must
    accept a TCP connection within TPU_CONNECT_TIMEOUT_S first, since TF would otherwise wait
    for the worker indefinitely. A TPU name is resolved through the Cloud TPU API, bounded
    by the same timeout.
    """
    address = address or os.environ.get("TPU_NAME") or ("local" if _tpu_attached() else None)
    if not address:
        raise StrategyError("--strategy tpu: no TPU is attached to this machine and no --tpu address was given; "
                            "on a Cloud TPU VM pass --tpu local, for a TPU node --tpu NAME or "
                            "--tpu grpc://HOST:8470, or choose another --strategy")
    if address.startswith("grpc://"):
        _check_reachable(address)
    resolver = _bounded(lambda: tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address),
                        f"resolving TPU {address!r}")

    def connect() -> None:
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)

    _bounded(connect, f"connecting to TPU {address!r}")
    return tf.distribute.TPUStrategy(resolver)


def _tpu_attached() -> bool:
    """A Cloud TPU VM: TPU device files and the libtpu runtime (VFIO alone can be a GPU passthrough)."""
    devices = glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*")
    return bool(devices) and importlib.util.find_spec("libtpu") is not None


def _check_reachable(address: str) -> None:
    host, _, port = address[len("grpc://"):].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=TPU_CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as e:
        raise StrategyError(f"--strategy tpu: no TPU answers at {address} ({e}); check the address and that "
                            "the TPU is running, or choose another --strategy") from e


def _bounded(fn: Callable[[], T], what: str) -> T:
    """Runs `fn` with a time limit; the Cloud TPU client has no timeouts of its own.

    A daemon thread, not an executor: a call stuck past the limit must not keep
    the process from exiting (Python joins executor threads at exit).
    """
    outcome: dict[str, object] = {}

    def call() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=call, name="tpu-connect", daemon=True)
    thread.start()
    thread.join(TPU_CONNECT_TIMEOUT_S)
    if thread.is_alive():
        raise StrategyError(f"--strategy tpu: {what} took over {TPU_CONNECT_TIMEOUT_S} s; check the TPU name, "
                            "zone and project, or pass --tpu grpc://HOST:8470")
    error = outcome.get("error")
    if isinstance(error, (ValueError, RuntimeError, OSError, tf.errors.OpError)):
        raise StrategyError(f"--strategy tpu: {what} failed ({error}); on Cloud TPU VMs pass --tpu local, "
                            "elsewhere --tpu grpc://HOST:8470, or choose another --strategy") from error
    if error is not None:
        raise error
    return outcome["value"]  # type: ignore[return-value]
