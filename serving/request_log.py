"""TF Serving's request logger: sampled requests and responses as PredictionLog TFRecords.

A model's `logging_config` (ModelServerConfig) sets a sampling rate and a file
name prefix. The transports log successful predict, classify and regress calls;
REST requests appear as the request protos gRPC would have sent.

Logging must not slow serving down, so a request only draws a random number and
queues one record of what it already holds: a REST predict's JSON body and
answer, a gRPC call's serialized request and response, a classify or regress
call's examples and results. A shipper thread joins the queued records every
few milliseconds and writes them through a pipe to a writer process
(serving/prediction_log_writer.py); it does no per-record work, so it never
holds the interpreter lock long enough to delay the requests' threads. The writer decodes the
JSON with the server's own codec, encodes the PredictionLog records and writes
the files at idle CPU priority, so it only uses CPU time that serving leaves
unused. While serving keeps every core busy, the records wait: first in the pipe,
then in the server's queue, which is bounded in bytes. Past that bound, records
are dropped and counted, with a warning, rather than slowing requests.
bench/serving_bench.py measures the cost.

The writer confirms what it has written. If it dies, the records sent to it and
not confirmed are counted as dropped, and a new writer takes the next ones.
"""
from __future__ import annotations

import collections
import fcntl
import logging
import os
import pickle
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from serving.config import RequestLogging
from serving.prediction_log_writer import (CONFIRMATION, FRAME_HEADER, GRPC_KINDS, META, RECORD_HEAD, REST_CLASSIFY,
                                          REST_PREDICT, REST_REGRESS)
from serving.servable import Servable

log = logging.getLogger(__name__)

SHIP_SECONDS = 0.02  # how long a record may wait before it is shipped
SHIP_RECORDS = 512  # ship sooner once this many are queued
FRAME_RECORDS = 512  # at most this many records in one frame: joining them holds the interpreter lock
STOP_SECONDS = 60.0  # how long shutdown waits for the writer to finish
PIPE_BYTES = 1 << 20  # the pipe to the writer holds this much while the writer waits for idle CPU
_F_SETPIPE_SZ = 1031  # fcntl.h; Python 3.10's fcntl module does not name it
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class RequestLogger:
    """Samples calls per model and ships them to the writer process.

    `logging_of` gives a model's current logging_config by name (it changes on
    config reloads, by file polling or over gRPC), or None when it is not logged.
    """

    def __init__(self, logging_of: Callable[[str], RequestLogging | None], max_queue_bytes: int = 64 << 20,
                 max_file_bytes: int = 64 << 20, max_file_seconds: float = 3600):
        self._logging_of = logging_of
        self._queue: collections.deque[tuple] = collections.deque()
        self._max_queue_bytes = max_queue_bytes
        self._queued_bytes = 0
        self._queued_lock = threading.Lock()
        self._writer_args = [f"--max-file-bytes={max_file_bytes}", f"--max-file-seconds={max_file_seconds}"]
        self._writer: _WriterProcess | None = None
        self._meta_ids: dict[tuple, int] = {}  # per model version, signature and settings: its meta record's number
        self._meta_records: list[bytes] = []  # every meta record, by number (a new writer gets them all)
        self._meta_lock = threading.Lock()
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._closing = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None  # started with the first sampled call
        self._thread_lock = threading.Lock()

    @property
    def dropped(self) -> int:
        """Records dropped: the queue was full, or the writer process failed or died before writing them."""
        return self._dropped

    @property
    def writer_pid(self) -> int | None:
        """The writer process's pid while one runs (it starts with the first shipped records)."""
        writer = self._writer
        return writer.process.pid if writer is not None else None

    def rest_predict(self, servable: Servable, signature_name: str, body: bytes, answer: bytes) -> None:
        """A REST predict: its JSON request body and JSON answer (the writer turns them into tensors)."""
        self._offer(REST_PREDICT, servable, signature_name, body, answer)

    def rest_classify(self, servable: Servable, signature_name: str, examples: list[bytes],
                      results: list[list[tuple[str, float]]]) -> None:
        """A REST classify: the serialized examples (context merged) and the (label, score) pairs."""
        self._offer(REST_CLASSIFY, servable, signature_name, examples, results)

    def rest_regress(self, servable: Servable, signature_name: str, examples: list[bytes],
                     values: list[float]) -> None:
        self._offer(REST_REGRESS, servable, signature_name, examples, values)

    def grpc(self, method: str, servable: Servable, signature_name: str, request, response) -> None:
        """A gRPC predict, classify or regress: its request and response protos."""
        self._offer(GRPC_KINDS[method], servable, signature_name, request, response)

    def _offer(self, kind: int, servable: Servable, signature_name: str, request, response) -> None:
        settings = self._logging_of(servable.name)
        if settings is None or random.random() >= settings.sampling_rate:
            return
        if kind in GRPC_KINDS.values():
            request, response = request.SerializeToString(), response.SerializeToString()
        elif kind != REST_PREDICT:
            request, response = pickle.dumps((request, response), protocol=pickle.HIGHEST_PROTOCOL), b""
        key = (servable.name, servable.version, signature_name, settings.sampling_rate, settings.filename_prefix,
               kind == REST_PREDICT)
        meta_id = self._meta_ids.get(key)
        if meta_id is None:
            meta_id = self._register_meta(key, servable)
        record = RECORD_HEAD.pack(kind, meta_id, time.time(), len(request), len(response)) + request + response
        with self._queued_lock:
            full = self._queue and self._queued_bytes + len(record) > self._max_queue_bytes
            if not full:
                self._queued_bytes += len(record)
        if full:
            self._drop(1, "request log queue full")
            return
        self._queue.append(record)
        if self._thread is None:
            self._start_shipper()
        if len(self._queue) >= SHIP_RECORDS and not self._wake.is_set():
            self._wake.set()

    def _register_meta(self, key: tuple, servable: Servable) -> int:
        """A number for (model, version, signature, sampling rate, file prefix), and for a REST predict the
        signature's input and output dtypes, which the writer needs to read the JSON. Its record is kept
        before the number is published, so every writer gets it before any call that uses it."""
        with self._meta_lock:
            meta_id = self._meta_ids.get(key)
            if meta_id is None:
                meta = key[:5]
                if key[5]:
                    signature = servable.signature_def(key[2])
                    meta += tuple(tuple(sorted((name, info.dtype) for name, info in tensors.items()))
                                  for tensors in (signature.inputs, signature.outputs))
                meta_id = len(self._meta_records)
                data = pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL)
                self._meta_records.append(RECORD_HEAD.pack(META, meta_id, 0.0, len(data), 0) + data)
                self._meta_ids[key] = meta_id
        return meta_id

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
            while self._queue:
                records = [self._queue.popleft() for _ in range(min(len(self._queue), FRAME_RECORDS))]
                self._ship(records)
                with self._queued_lock:
                    self._queued_bytes -= sum(map(len, records))
            if closing:
                break
        self._stop_writer()

    def _ship(self, records: list[bytes]) -> None:
        writer = self._running_writer()
        if writer is None:
            self._drop(len(records), "request log writer process not running")
            return
        # Read after the records were taken: the meta record of every one of them is in the list by now.
        metas = self._meta_records[writer.metas_sent:]
        try:
            writer.send(b"".join(metas + records), len(records))
        except OSError as error:
            log.error("request log writer process exited (code %s): %s; starting a new one for the next records",
                      writer.process.poll(), error)
            self._writer = None
            self._drop(len(records) + writer.abandon(), "request log writer process failed")
            return
        writer.metas_sent += len(metas)
        failed = writer.newly_failed()
        if failed:
            self._drop(failed, "request log writer could not write records")

    def _running_writer(self) -> _WriterProcess | None:
        if self._writer is None:
            try:
                self._writer = _WriterProcess(self._writer_args)
            except OSError:
                log.exception("request log: could not start the writer process")
                return None
            log.info("request log: writer process %d started", self._writer.process.pid)
        return self._writer

    def _stop_writer(self) -> None:
        if self._writer is None:
            return
        lost, code = self._writer.finish(STOP_SECONDS)
        if code != 0:
            log.error("request log writer process exited with code %s; see its messages above", code)
        if lost:
            self._drop(lost, "request log writer did not confirm records")


class _WriterProcess:
    """One writer process: frames go to its stdin, and it confirms on its stdout how many records it has
    written and how many it could not write (cumulative counts, after each flush)."""

    def __init__(self, writer_args: list[str]):
        command = [sys.executable, "-m", "serving.prediction_log_writer", f"--server-pid={os.getpid()}",
                   f"--log-level={logging.getLevelName(log.getEffectiveLevel())}", *writer_args]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT,
                                                                         os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        try:
            fcntl.fcntl(self.process.stdin.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # a system limit below PIPE_BYTES: the default pipe only waits sooner
            pass
        os.set_blocking(self.process.stdout.fileno(), False)
        self.metas_sent = 0  # meta records it has been sent
        self._sent = 0  # call records in the frames written to its pipe
        self._written = self._failed = 0  # as last confirmed
        self._failed_reported = 0
        self._pending = b""

    def send(self, frame: bytes, records: int) -> None:
        """A frame of records, `records` of them calls."""
        self.process.stdin.write(FRAME_HEADER.pack(len(frame)))
        self.process.stdin.write(frame)
        self.process.stdin.flush()
        self._sent += records

    def newly_failed(self) -> int:
        """Records the writer confirmed it could not write, since the last call."""
        self._read_confirmations()
        failed, self._failed_reported = self._failed - self._failed_reported, self._failed
        return failed

    def abandon(self) -> int:
        """After a failed send: stop the process; the records sent and neither written nor reported failed."""
        self.process.kill()
        self.process.wait()
        self._read_confirmations()  # what it confirmed before it died is still in the pipe
        return self._sent - self._written - self._failed_reported

    def finish(self, timeout: float) -> tuple[int, int]:
        """Close its input, wait for it to write everything; (records not confirmed, exit code)."""
        try:
            self.process.stdin.close()  # end of input: the writer writes what it has and exits
        except OSError:
            pass
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("request log writer process did not finish within %.0f s; stopping it", timeout)
            self.process.kill()
            code = self.process.wait()
        self._read_confirmations()
        return self._sent - self._written - self._failed_reported, code

    def _read_confirmations(self) -> None:
        data, fd = self._pending, self.process.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 16)  # non-blocking: what has arrived so far
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            data += chunk
        whole = len(data) - len(data) % CONFIRMATION.size
        if whole:
            self._written, self._failed = CONFIRMATION.unpack_from(data, whole - CONFIRMATION.size)
        self._pending = data[whole:]
