"""The request logger's writer process: turns shipped calls into PredictionLog TFRecord files.

The model server (serving/request_log.py) queues one record per sampled call of
what the call already holds, and every few milliseconds ships the queued records
here through a pipe as one frame: a REST predict's JSON body and answer, a gRPC
call's serialized request and response, a classify or regress call's examples
and results (pickled). A meta record, sent once per writer, names the model,
version, signature, sampling rate and file prefix the calls' records refer to. This
process reads the JSON with the server's own codec, encodes the records and
writes the files, so logging costs the requests being served almost nothing.
It imports neither TensorFlow nor the proto classes, and starts in a fraction of
a second.

It runs at idle CPU priority (SCHED_IDLE, or nice +19 where that is refused).
When serving keeps every core busy, serving wins: the records wait in the pipe
and the server's queue, and are written once a core is free.

Files are `<filename_prefix>.<start time>.<server pid>.<writer pid>.<n>.tfrecord`.
They are flushed every second and rotated by size and age. After each flush
this process confirms on stdout how many records it has written and how many it
could not write, so the server can count what a crash loses. It ignores
SIGINT/SIGTERM (a Ctrl-C reaches the whole process group). It exits when the
server closes the pipe, after writing everything it was sent.

    python -m serving.prediction_log_writer --server-pid PID   # frames on stdin
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import pickle
import select
import signal
import struct
import sys
import time
from functools import lru_cache
from typing import Callable, Iterator, NamedTuple, Sequence

import google_crc32c

from serving import json_codec
from serving.errors import ServingError
from serving import prediction_log_wire as wire

log = logging.getLogger("serving.request_log")

FLUSH_SECONDS = 1.0
FALLBACK_NICENESS = 19  # where SCHED_IDLE is refused: the lowest priority nice gives
FRAME_HEADER = struct.Struct("<Q")  # a frame's length; the frame is records, one after the other
# A record: its kind, its meta record's number, the call's time, the request's and the response's length.
RECORD_HEAD = struct.Struct("<BIdII")
META, REST_PREDICT, REST_CLASSIFY, REST_REGRESS, GRPC_PREDICT, GRPC_CLASSIFY, GRPC_REGRESS = range(7)
GRPC_KINDS = {"predict": GRPC_PREDICT, "classify": GRPC_CLASSIFY, "regress": GRPC_REGRESS}
CONFIRMATION = struct.Struct("<QQ")  # records written, records that could not be written (both cumulative)
_MASK_DELTA = 0xA282EAD8


def _masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC-32C (tensorflow/core/lib/hash/crc32c.h)."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF)


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length, its CRC, the data, its CRC."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


class LogFile:
    """One TFRecord file being written; its name carries the start time, the server's pid, this process's pid and a counter."""

    _counter = 0

    def __init__(self, prefix: str, server_pid: int):
        LogFile._counter += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = f"{prefix}.{stamp}.{server_pid}.{os.getpid()}.{LogFile._counter}.tfrecord"
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self.opened = time.monotonic()
        self.size = 0
        log.info("request log: writing %s", self.path)

    def write(self, data: bytes) -> None:
        record = tfrecord(data)
        self._file.write(record)
        self.size += len(record)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class _Info(NamedTuple):
    """What the JSON codec reads of a signature's TensorInfo."""

    dtype: int


@lru_cache(maxsize=1024)
def _infos(dtypes: tuple[tuple[str, int], ...]) -> dict[str, _Info]:
    """One mapping per signature, so the codec's per-signature plans are reused."""
    return {name: _Info(dtype) for name, dtype in dtypes}


def rest_columns(calls: Sequence[tuple[bytes, bytes]], input_dtypes: tuple, output_dtypes: tuple
                 ) -> tuple[dict[str, list], dict[str, list]]:
    """REST predicts' inputs and outputs, per tensor each call's array, read as the server read the bodies.

    The answers are read back with the same codec: numbers round-trip exactly
    (float32 is written with the shortest digits that round-trip), "_bytes"
    outputs come back from their base64, other strings are as the client
    received them. Calls in row format are read together, one array per tensor
    split by call, which gives the same arrays as reading them one by one.
    """
    docs = [(json_codec.parse_body(body), json_codec.loads(answer)) for body, answer in calls]
    inputs, outputs = _infos(input_dtypes), _infos(output_dtypes)
    if len(docs) > 1 and all(_plain_rows(doc, answer) for doc, answer in docs):
        try:
            return _read_together(docs, inputs, outputs)
        except ServingError:  # shapes differ between calls: read each on its own
            pass
    columns: tuple[dict[str, list], dict[str, list]] = ({}, {})
    for doc, answer in docs:
        rows = {"instances": answer["predictions"]} if "predictions" in answer else {"inputs": answer["outputs"]}
        for tensors, read in zip(columns, (json_codec.predict_inputs(doc, inputs)[0],
                                           json_codec.predict_inputs(rows, outputs)[0])):
            for name, value in read.items():
                tensors.setdefault(name, []).append(value)
    if any(len(values) != len(docs) for tensors in columns for values in tensors.values()):
        raise ValueError("the calls do not all have the same tensors")
    return columns


def _plain_rows(doc: dict, answer: dict) -> bool:
    """A row-format call whose answer has a row per instance."""
    instances, predictions = doc.get("instances"), answer.get("predictions")
    return (doc.keys() <= {"instances", "signature_name"} and answer.keys() == {"predictions"}
            and isinstance(instances, list) and isinstance(predictions, list)
            and 0 < len(instances) == len(predictions))


def _read_together(docs: list[tuple[dict, dict]], inputs: dict, outputs: dict) -> tuple[dict, dict]:
    ends = list(itertools.accumulate(len(doc["instances"]) for doc, _ in docs))
    spans = list(zip([0] + ends[:-1], ends))
    read = (json_codec.predict_inputs({"instances": [row for doc, _ in docs for row in doc["instances"]]}, inputs)[0],
            json_codec.predict_inputs({"instances": [row for _, answer in docs for row in answer["predictions"]]},
                                      outputs)[0])
    return tuple({name: [array[start:end] for start, end in spans] for name, array in tensors.items()}
                 for tensors in read)


def rest_predict_records(meta: tuple, calls: Sequence[tuple[float, bytes, bytes]]) -> list[tuple[str, bytes]]:
    """(file name prefix, serialized PredictionLog) of REST predicts (time, body, answer) of one signature."""
    name, version, signature, rate, prefix, input_dtypes, output_dtypes = meta
    inputs, outputs = rest_columns([(body, answer) for _, body, answer in calls], input_dtypes, output_dtypes)
    logs = wire.predict_logs(name, version, signature, inputs, outputs)
    return [(prefix, wire.log_metadata(name, version, signature, rate, timestamp) + log)
            for (timestamp, _, _), log in zip(calls, logs)]


def record(kind: int, meta: tuple, request: bytes, response: bytes, timestamp: float) -> tuple[str, bytes]:
    """(file name prefix, serialized PredictionLog) of one shipped call."""
    if kind == REST_PREDICT:
        return rest_predict_records(meta, [(timestamp, request, response)])[0]
    name, version, signature, rate, prefix = meta
    if kind in (REST_CLASSIFY, REST_REGRESS):
        encode = wire.classify_log if kind == REST_CLASSIFY else wire.regress_log
        body = encode(name, version, signature, *pickle.loads(request))
    else:  # gRPC: the serialized request and response, as they went over the wire
        method = next(method for method, code in GRPC_KINDS.items() if code == kind)
        body = wire.call_log(method, name, version, signature, request, response)
    return prefix, wire.log_metadata(name, version, signature, rate, timestamp) + body


def records(frame: bytes) -> Iterator[tuple[int, int, float, bytes, bytes]]:
    """(kind, meta number, time, request, response) of each record in a frame."""
    view, offset = memoryview(frame), 0
    while offset < len(frame):
        kind, meta_id, timestamp, request_size, response_size = RECORD_HEAD.unpack_from(frame, offset)
        offset += RECORD_HEAD.size
        request = bytes(view[offset:offset + request_size])
        offset += request_size
        yield kind, meta_id, timestamp, request, bytes(view[offset:offset + response_size])
        offset += response_size


class Writer:
    """Writes shipped records to files by prefix; a bad record or a full disk costs that record only."""

    def __init__(self, server_pid: int, max_file_bytes: int, max_file_seconds: float):
        self._server_pid = server_pid
        self._max_file_bytes = max_file_bytes
        self._max_file_seconds = max_file_seconds
        self._files: dict[str, LogFile] = {}
        self._metas: dict[int, tuple] = {}  # meta record number -> (model, version, signature, rate, prefix, ...)
        self.written = self.failed = 0

    def write_frame(self, frame: bytes) -> None:
        """Write a frame's calls in order; a run of REST predicts of one signature is read together."""
        run: list[tuple[float, bytes, bytes]] = []
        run_meta = None
        for kind, meta_id, timestamp, request, response in records(frame):
            if kind == META:
                self._metas[meta_id] = pickle.loads(request)
                continue
            if kind == REST_PREDICT and meta_id == run_meta:
                run.append((timestamp, request, response))
                continue
            self._write_run(run_meta, run)
            run, run_meta = [], None
            if kind == REST_PREDICT:
                run, run_meta = [(timestamp, request, response)], meta_id
            else:
                meta = self._metas.get(meta_id)
                self._write(meta, 1, lambda: [record(kind, meta, request, response, timestamp)])
        self._write_run(run_meta, run)

    def _write_run(self, meta_id: int | None, run: list[tuple[float, bytes, bytes]]) -> None:
        if not run:
            return
        meta = self._metas.get(meta_id)
        if len(run) == 1 or not self._write(meta, len(run), lambda: rest_predict_records(meta, run), quiet=True):
            for call in run:  # one by one: only a bad call is lost
                self._write(meta, 1, lambda: rest_predict_records(meta, [call]))

    def _write(self, meta: tuple | None, count: int, encode: Callable[[], list[tuple[str, bytes]]],
               quiet: bool = False) -> bool:
        """Encode `count` records and write them; False if encoding failed (counted unless `quiet`).

        A failure costs those records only: it is counted and logged, and the logger goes on.
        """
        try:
            encoded = encode()
        except Exception:  # noqa: BLE001 - a bad record must not stop the logger
            if not quiet:
                self._count_failed(count, meta)
            return False
        done = 0
        try:
            for prefix, data in encoded:
                self._file(prefix).write(data)
                done += 1
        except Exception:  # noqa: BLE001 - a full disk costs the records, not the logger
            self._count_failed(count - done, meta)
        self.written += done
        return True

    def _count_failed(self, count: int, meta: tuple | None) -> None:
        before, self.failed = self.failed, self.failed + count
        if before == 0 or before // 1000 != self.failed // 1000:  # a lasting cause (full disk) must not flood
            log.exception("request log: %d records not written so far; the latest was for model %s",
                          self.failed, meta[0] if meta else "(unknown)")

    def _file(self, prefix: str) -> LogFile:
        file = self._files.get(prefix)
        if file is not None and (file.size >= self._max_file_bytes
                                 or time.monotonic() - file.opened > self._max_file_seconds):
            file.close()
            file = None
        if file is None:
            file = self._files[prefix] = LogFile(prefix, self._server_pid)
        return file

    def flush(self) -> None:
        for file in self._files.values():
            file.flush()

    def close(self) -> None:
        for file in self._files.values():
            file.close()
        self._files.clear()


def _read_exactly(fd: int, size: int) -> bytes | None:
    """`size` bytes from the pipe, or None at its end (the server closed it)."""
    chunks, remaining = [], size
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def confirm(fd: int, writer: Writer) -> None:
    """Tell the server what is written so far; never waits (a later confirmation supersedes a lost one)."""
    try:
        os.write(fd, CONFIRMATION.pack(writer.written, writer.failed))
    except OSError:  # the server is not reading now, or is gone
        pass


def run(fd: int, writer: Writer, confirm_fd: int) -> None:
    """Read frames until the pipe closes; flush the files and confirm every second meanwhile."""
    last_flush, confirmed = time.monotonic(), (0, 0)
    while True:
        ready, _, _ = select.select([fd], [], [], FLUSH_SECONDS)
        if ready:
            header = _read_exactly(fd, FRAME_HEADER.size)
            frame = None if header is None else _read_exactly(fd, FRAME_HEADER.unpack(header)[0])
            if frame is None:
                return
            writer.write_frame(frame)
        if time.monotonic() - last_flush >= FLUSH_SECONDS:
            writer.flush()
            last_flush = time.monotonic()
            if (writer.written, writer.failed) != confirmed:
                confirm(confirm_fd, writer)
                confirmed = writer.written, writer.failed


def lower_priority() -> str:
    """Run only on CPU time nothing else wants (SCHED_IDLE); nice +19 where the policy is refused."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):
        os.nice(FALLBACK_NICENESS - os.nice(0))
        return f"nice {os.nice(0)}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-pid", type=int, required=True, help="the model server's pid, for file names")
    parser.add_argument("--max-file-bytes", type=int, default=64 << 20, help="start a new file past this size")
    parser.add_argument("--max-file-seconds", type=float, default=3600, help="start a new file past this age")
    parser.add_argument("--log-level", default="INFO", help="logging level (the server's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s request log writer: %(message)s")
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # the server closes the pipe when it stops; then we finish
    log.debug("request log writer: running at %s", lower_priority())
    confirm_fd = sys.stdout.fileno()
    os.set_blocking(confirm_fd, False)
    writer = Writer(args.server_pid, args.max_file_bytes, args.max_file_seconds)
    try:
        run(sys.stdin.fileno(), writer, confirm_fd)
    finally:
        writer.close()
        os.set_blocking(confirm_fd, True)  # the last word: the server reads it after we exit
        confirm(confirm_fd, writer)
    log.debug("request log: %d records written, %d not written", writer.written, writer.failed)
    return 0 if writer.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
