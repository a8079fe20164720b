"""The request logger's writer process: turns shipped calls into PredictionLog TFRecord files.

The model server (serving/request_log.py) queues what each sampled call already
holds and, every few milliseconds, ships it here through a pipe as one pickled
frame: a REST predict's JSON body and answer, a gRPC predict's serialized
request and response, a classify or regress call's examples and results. This
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
import logging
import os
import pickle
import select
import signal
import struct
import sys
import time
from functools import lru_cache
from typing import NamedTuple, Sequence

import google_crc32c

from serving import json_codec
from serving import prediction_log_wire as wire

log = logging.getLogger("serving.request_log")

FLUSH_SECONDS = 1.0
FALLBACK_NICENESS = 19  # where SCHED_IDLE is refused: the lowest priority nice gives
FRAME_HEADER = struct.Struct("<Q")  # the pickled frame's length
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


def rest_tensors(body: bytes, answer: bytes, input_dtypes: tuple, output_dtypes: tuple) -> tuple[dict, dict]:
    """A REST predict's inputs and outputs as arrays, read as the server read the body.

    The answer is read back with the same codec: numbers round-trip exactly (float32
    is written with the shortest digits that round-trip), "_bytes" outputs come
    back from their base64; other strings are as the client received them.
    """
    inputs, _ = json_codec.predict_inputs(json_codec.parse_body(body), _infos(input_dtypes))
    doc = json_codec.loads(answer)
    rows = {"instances": doc["predictions"]} if "predictions" in doc else {"inputs": doc["outputs"]}
    outputs, _ = json_codec.predict_inputs(rows, _infos(output_dtypes))
    return inputs, outputs


def record(call: tuple) -> tuple[str, bytes]:
    """(file name prefix, serialized PredictionLog) of one shipped call."""
    kind, meta, request, response, timestamp = call
    name, version, signature, rate, prefix = meta[:5]
    transport, method = kind.split("_")
    if transport == "grpc":  # the serialized request and response, as they went over the wire
        body = wire.call_log(method, name, version, signature, request, response)
    elif method == "predict":
        body = wire.predict_log(name, version, signature, *rest_tensors(request, response, *meta[5:]))
    elif method == "classify":
        body = wire.classify_log(name, version, signature, request, response)
    else:
        body = wire.regress_log(name, version, signature, request, response)
    return prefix, wire.log_metadata(name, version, signature, rate, timestamp) + body


class Writer:
    """Writes shipped calls to files by prefix; a bad record or a full disk costs that record only."""

    def __init__(self, server_pid: int, max_file_bytes: int, max_file_seconds: float):
        self._server_pid = server_pid
        self._max_file_bytes = max_file_bytes
        self._max_file_seconds = max_file_seconds
        self._files: dict[str, LogFile] = {}
        self.written = self.failed = 0

    def write_calls(self, calls: list[tuple]) -> None:
        for call in calls:
            try:
                prefix, data = record(call)
                self._file(prefix).write(data)
                self.written += 1
            except Exception:  # noqa: BLE001 - one bad record must not stop the logger
                self.failed += 1
                if self.failed == 1 or self.failed % 1000 == 0:  # a lasting cause (full disk) must not flood
                    log.exception("request log: %d records not written so far; the latest was for model %s",
                                  self.failed, call[1][0])

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
            writer.write_calls(pickle.loads(frame))
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
