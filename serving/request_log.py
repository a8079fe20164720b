"""TF Serving's request logger: sampled requests and responses as PredictionLog TFRecords.

A model's `logging_config` (ModelServerConfig) sets a sampling rate and a file
name prefix. Successful predict, classify and regress calls are sampled at the
inference layer, so REST and gRPC are logged alike: REST requests appear as the
request protos gRPC would have sent.

The request path only draws a random number and appends references to a queue.
A shipper thread wakes every few milliseconds, stacks the queued predicts of
each signature into one array per tensor (a few microseconds a call, instead of
tens to encode it) and sends them through a pipe to a writer process
(serving/prediction_log_writer.py), which encodes and writes the files on its own
interpreter lock. So logging every request costs the served requests almost
nothing: bench/serving_bench.py measures it. When the queue is full, records are
dropped and counted (with a warning) rather than slowing requests.
"""
from __future__ import annotations

import collections
import logging
import os
import pickle
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from serving.config import ModelEntry
from serving.prediction_log_writer import FRAME_HEADER
from serving.servable import Servable

log = logging.getLogger(__name__)

SHIP_SECONDS = 0.02  # how long a record may wait before it is shipped
SHIP_RECORDS = 512  # ship sooner once this many are queued
STOP_SECONDS = 60.0  # how long shutdown waits for the writer to finish
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class RequestLogger:
    """Samples calls per model and ships them to the writer process.

    `entries` gives the current model config (it changes on config reloads, by
    file polling or over gRPC); each model's `logging` field says whether and how.
    """

    def __init__(self, entries: Callable[[], Iterable[ModelEntry]], max_queue: int = 10_000,
                 max_file_bytes: int = 64 << 20, max_file_seconds: float = 3600):
        self._entries = entries
        self._queue: collections.deque[tuple] = collections.deque()
        self._max_queue = max_queue
        self._writer_args = [f"--max-file-bytes={max_file_bytes}", f"--max-file-seconds={max_file_seconds}"]
        self._writer: subprocess.Popen | None = None
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._closing = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None  # started with the first sampled call
        self._thread_lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Records dropped because the queue was full or the writer process failed."""
        return self._dropped

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid while one runs (it starts with the first shipped records)."""
        writer = self._writer
        return writer.pid if writer is not None else None

    def predict(self, servable: Servable, signature_name: str, inputs: Mapping[str, np.ndarray],
                output_filter: Iterable[str], outputs: Mapping[str, np.ndarray]) -> None:
        self._offer("predict", servable, signature_name, inputs, tuple(output_filter), outputs)

    def classify(self, servable: Servable, signature_name: str, examples: list[bytes],
                 results: list[list[tuple[str, float]]]) -> None:
        self._offer("classify", servable, signature_name, examples, (), results)

    def regress(self, servable: Servable, signature_name: str, examples: list[bytes], values: list[float]) -> None:
        self._offer("regress", servable, signature_name, examples, (), values)

    def _offer(self, kind: str, servable: Servable, signature_name: str, request: object,
               output_filter: tuple[str, ...], response: object) -> None:
        settings = next((entry.logging for entry in self._entries() if entry.name == servable.name), None)
        if settings is None or random.random() >= settings.sampling_rate:
            return
        if len(self._queue) >= self._max_queue:
            self._drop(1, "request log queue full")
            return
        meta = (servable.name, servable.version, signature_name, settings.sampling_rate, settings.filename_prefix)
        self._queue.append((kind, meta, output_filter, request, response, time.time()))
        if self._thread is None:
            self._start_shipper()
        if len(self._queue) >= SHIP_RECORDS:
            self._wake.set()

    def _start_shipper(self) -> None:
        with self._thread_lock:
            if self._thread is None and not self._closing:
                self._thread = threading.Thread(target=self._ship_loop, name="request-logger", daemon=True)
                self._thread.start()

    def _drop(self, count: int, why: str) -> None:
        with self._dropped_lock:
            before = self._dropped
            self._dropped = after = before + count
        if before == 0 or before // 1000 != after // 1000:  # a lasting cause must not flood the log
            log.warning("%s: %d records dropped so far", why, after)

    def close(self) -> None:
        """Ship what is queued, let the writer process write it and close its files (at shutdown)."""
        with self._thread_lock:
            self._closing = True
        if self._thread is not None:
            self._wake.set()
            self._thread.join()

    # -- shipper thread -----------------------------------------------------------------

    def _ship_loop(self) -> None:
        while True:
            self._wake.wait(SHIP_SECONDS)
            self._wake.clear()
            closing = self._closing  # read before draining: nothing offered before close() is left behind
            queued = [self._queue.popleft() for _ in range(len(self._queue))]
            if queued:
                self._ship(queued)
            if closing:
                break
        self._stop_writer()

    def _ship(self, queued: list[tuple]) -> None:
        try:
            frame = pickle.dumps(pack(queued), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 - an unpicklable record costs its batch, never the server
            log.exception("request log: could not pack %d records", len(queued))
            self._drop(len(queued), "request log packing failed")
            return
        writer = self._running_writer()
        if writer is None:
            self._drop(len(queued), "request log writer process not running")
            return
        try:
            writer.stdin.write(FRAME_HEADER.pack(len(frame)) + frame)
            writer.stdin.flush()
        except OSError as error:
            log.error("request log writer process exited (code %s): %s; starting a new one for the next records",
                      writer.poll(), error)
            self._writer = None
            self._drop(len(queued), "request log writer process failed")

    def _running_writer(self) -> subprocess.Popen | None:
        if self._writer is None:
            command = [sys.executable, "-m", "serving.prediction_log_writer", f"--server-pid={os.getpid()}",
                       f"--log-level={logging.getLevelName(log.getEffectiveLevel())}", *self._writer_args]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT,
                                                                             os.environ.get("PYTHONPATH")]))}
            try:
                self._writer = subprocess.Popen(command, stdin=subprocess.PIPE, env=env)
            except OSError:
                log.exception("request log: could not start the writer process")
                return None
            log.info("request log: writer process %d started", self._writer.pid)
        return self._writer

    def _stop_writer(self) -> None:
        if self._writer is None:
            return
        try:
            self._writer.stdin.close()  # end of input: the writer writes what it has and exits
        except OSError:
            pass
        try:
            code = self._writer.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.error("request log writer process did not finish within %.0f s; stopping it", STOP_SECONDS)
            self._writer.kill()
            code = self._writer.wait()
        if code != 0:
            log.error("request log writer process exited with code %s; see its messages above", code)


def pack(queued: Sequence[tuple]) -> list[tuple]:
    """Queued calls as the writer process reads them: predicts of one signature stacked per tensor.

    Stacking turns many small arrays into one per tensor, so pickling costs a few
    microseconds a call; tensors that cannot be stacked (scalars, mixed shapes or
    dtypes) travel as they are. Calls keep their order within a model's group.
    """
    groups: dict[tuple, list[tuple]] = {}
    for call in queued:
        kind, meta, output_filter, request, response, _ = call
        key = (kind, meta, output_filter, tuple(request), tuple(response)) if kind == "predict" else (kind, meta)
        groups.setdefault(key, []).append(call)
    packed = []
    for (kind, meta, *_), calls in groups.items():
        timestamps = [call[5] for call in calls]
        if kind == "predict":
            output_filter = calls[0][2]
            packed.append((kind, meta, timestamps, _stack([call[3] for call in calls]), output_filter,
                           _stack([call[4] for call in calls])))
        else:
            packed.append((kind, meta, timestamps, [(call[3], call[4]) for call in calls]))
    return packed


def _stack(tensors: Sequence[Mapping[str, np.ndarray]]) -> list[tuple]:
    """Per tensor name: (name, stacked array, rows per call), or (name, None, the arrays) when they differ."""
    packed = []
    for name in tensors[0]:
        arrays = [call[name] for call in tensors]
        first = arrays[0]
        if first.ndim and len({(array.dtype, array.shape[1:]) for array in arrays}) == 1:
            packed.append((name, np.concatenate(arrays), [len(array) for array in arrays]))
        else:
            packed.append((name, None, arrays))
    return packed
