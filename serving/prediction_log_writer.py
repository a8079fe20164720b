"""The request logger's writer process: turns shipped calls into PredictionLog TFRecord files.

The model server (serving/request_log.py) hands each sampled call's arrays over
by reference and, every few milliseconds, ships them here through a pipe as one
pickled frame: concurrent predicts of one signature arrive stacked, one array
per tensor. Encoding and writing happen in this process, on its own interpreter
lock, so logging takes almost no CPU from the requests being served. It imports
neither TensorFlow nor the proto classes and starts in a fraction of a second.

It runs at a lower scheduling priority (nice +10): when serving and logging
compete for the CPU, serving wins and the records wait in the server's queue
(dropped and counted only past its bound).

Files are `<filename_prefix>.<start time>.<server pid>.<n>.tfrecord`, flushed
every second and rotated by size and age. It ignores SIGINT/SIGTERM (a Ctrl-C
reaches the whole process group) and exits when the server closes the pipe,
after writing everything it was sent.

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
from typing import Iterator, Sequence

import google_crc32c
import numpy as np

from serving import prediction_log_wire as wire

log = logging.getLogger("serving.request_log")

FLUSH_SECONDS = 1.0
NICENESS = 10  # below the server: logging must not take CPU the requests need
FRAME_HEADER = struct.Struct("<Q")  # the pickled frame's length
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
    """One TFRecord file being written; its name carries the start time, the server's pid and a counter."""

    _counter = 0

    def __init__(self, prefix: str, server_pid: int):
        LogFile._counter += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.path = f"{prefix}.{stamp}.{server_pid}.{LogFile._counter}.tfrecord"
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


def unstack(packed: Sequence[tuple], count: int) -> list[tuple[str, list[np.ndarray]]]:
    """Per tensor, each call's array, from shipped ones: (name, stacked, rows per call) or (name, None, arrays)."""
    columns = []
    for name, stacked, parts in packed:
        if stacked is None:
            columns.append((name, parts))
        else:
            ends = np.cumsum(parts)
            columns.append((name, [stacked[end - rows:end] for end, rows in zip(ends, parts)]))
    if any(len(arrays) != count for _, arrays in columns):
        raise ValueError(f"a shipped tensor does not have all {count} calls")
    return columns


def _entries(message: str, field_name: str, packed: Sequence[tuple], count: int) -> list[bytes]:
    """Per call, its map field of every tensor, serialized."""
    columns = [wire.map_entries(message, field_name, name, arrays) for name, arrays in unstack(packed, count)]
    return [b"".join(column[index] for column in columns) for index in range(count)]


def records(group: tuple) -> Iterator[tuple[str, bytes]]:
    """(filename prefix, serialized PredictionLog) for every call in one shipped group."""
    kind, (name, version, signature, rate, prefix), timestamps = group[:3]
    if kind == "predict":
        _, _, _, inputs, output_filter, outputs = group
        count = len(timestamps)
        calls = zip(timestamps, _entries("PredictRequest", "inputs", inputs, count),
                    _entries("PredictResponse", "outputs", outputs, count))
        for timestamp, input_entries, output_entries in calls:
            yield prefix, (wire.log_metadata(name, version, signature, rate, timestamp)
                           + wire.predict_log(name, version, signature, input_entries, output_filter, output_entries))
        return
    encode = wire.classify_log if kind == "classify" else wire.regress_log
    _, _, _, calls = group
    for timestamp, (examples, results) in zip(timestamps, calls):
        yield prefix, wire.log_metadata(name, version, signature, rate, timestamp) + encode(
            name, version, signature, examples, results)


class Writer:
    """Writes shipped groups to files by prefix; a bad record or a full disk costs that record only."""

    def __init__(self, server_pid: int, max_file_bytes: int, max_file_seconds: float):
        self._server_pid = server_pid
        self._max_file_bytes = max_file_bytes
        self._max_file_seconds = max_file_seconds
        self._files: dict[str, LogFile] = {}
        self.written = self.failed = 0

    def write_groups(self, groups: list[tuple]) -> None:
        for group in groups:
            try:
                for prefix, data in records(group):
                    self._file(prefix).write(data)
                    self.written += 1
            except Exception:  # noqa: BLE001 - one bad group must not stop the logger
                self.failed += 1
                if self.failed == 1 or self.failed % 1000 == 0:  # a lasting cause (full disk) must not flood
                    log.exception("request log: %d groups of records not written so far; the latest was for "
                                  "model %s", self.failed, group[1][0])

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


def run(fd: int, writer: Writer) -> None:
    """Read frames until the pipe closes; flush the files every second meanwhile."""
    last_flush = time.monotonic()
    while True:
        ready, _, _ = select.select([fd], [], [], FLUSH_SECONDS)
        if ready:
            header = _read_exactly(fd, FRAME_HEADER.size)
            frame = None if header is None else _read_exactly(fd, FRAME_HEADER.unpack(header)[0])
            if frame is None:
                return
            writer.write_groups(pickle.loads(frame))
        if time.monotonic() - last_flush >= FLUSH_SECONDS:
            writer.flush()
            last_flush = time.monotonic()


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
    os.nice(NICENESS)
    writer = Writer(args.server_pid, args.max_file_bytes, args.max_file_seconds)
    try:
        run(sys.stdin.fileno(), writer)
    finally:
        writer.close()
    log.debug("request log: %d records written, %d groups failed", writer.written, writer.failed)
    return 0 if writer.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
