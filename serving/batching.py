"""Merges concurrent predict requests into one signature call (`--enable_batching`).

A signature call has a fixed cost that dwarfs the per-row cost for small models,
so under load one call over 32 rows beats 32 calls. A leading request's thread
takes whatever compatible requests are queued (and optionally waits up to
`batch_timeout_micros` for more), so an idle server adds no waiting at all.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import queue
import re
import threading
import time
from typing import Mapping

import numpy as np

from serving.errors import Code, ServingError
from serving.servable import Servable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """The subset of TF Serving's BatchingParameters this server honours."""

    max_batch_size: int = 64
    batch_timeout_micros: int = 0
    num_batch_threads: int = os.cpu_count() or 1


def parse_batching_parameters(text: str) -> BatchingParameters:
    """Read TF Serving's batching_parameters text format (`max_batch_size { value: 64 }`)."""
    text = re.sub(r"#.*", "", text)
    fields = {name: int(value) for name, value in re.findall(r"(\w+)\s*\{\s*value:\s*(\d+)\s*\}", text)}
    known = {field.name for field in dataclasses.fields(BatchingParameters)}
    ignored = sorted(fields.keys() - known)
    if ignored:
        log.warning("batching parameters not supported here, ignored: %s", ", ".join(ignored))
    params = BatchingParameters(**{k: v for k, v in fields.items() if k in known})
    if params.max_batch_size < 1 or params.num_batch_threads < 1:
        raise ValueError(f"max_batch_size and num_batch_threads must be positive: {params}")
    return params


@dataclasses.dataclass(frozen=True)
class BatchStats:
    """What the batcher has done so far: how often it merged requests into one model call."""

    calls: int = 0  # model calls made for queued requests
    requests: int = 0  # requests those calls answered
    merged_calls: int = 0  # calls that answered more than one request
    largest_batch: int = 0  # most requests merged into one call


@dataclasses.dataclass(eq=False)
class _Task:
    key: tuple
    servable: Servable
    signature: str
    inputs: Mapping[str, np.ndarray]
    size: int
    # A token each time another thread answers or promotes this task (each at most once), put after it.
    wake: queue.SimpleQueue = dataclasses.field(default_factory=queue.SimpleQueue)
    answered: bool = False
    promoted: bool = False  # this request's thread holds a lead (set and cleared under the lock)
    outputs: dict | None = None
    error: Exception | None = None


class Batcher:
    """Runs predict calls, merging compatible concurrent ones along the batch dimension.

    No worker threads: the threads of the requests themselves run the batches
    (leader/follower). Up to `num_batch_threads` requests at a time lead: each
    takes whatever compatible requests are queued, runs them as one call and
    answers them, and, once its own request is answered, hands the lead to the
    oldest queued request, if any. A lone request on an idle server thus runs on
    its own thread with no handoff, and under load a request costs one wake-up.
    """

    def __init__(self, params: BatchingParameters):
        self._params = params
        self._queue: collections.deque[_Task] = collections.deque()
        self._cond = threading.Condition()
        self._leaders = 0  # requests' threads currently leading (at most num_batch_threads)
        self._stats = BatchStats()

    def run(self, servable: Servable, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes = {value.shape[0] if value.ndim else None for value in inputs.values()}
        size = sizes.pop() if len(sizes) == 1 else None
        if not size or size > self._params.max_batch_size:
            return servable.run(signature, inputs)  # not splittable along one batch dimension
        key = (id(servable), signature,
               tuple((name, value.dtype, value.shape[1:]) for name, value in sorted(inputs.items())))
        task = _Task(key, servable, signature, inputs, size)
        with self._cond:
            self._queue.append(task)
            if self._leaders < self._params.num_batch_threads:
                self._leaders += 1
                task.promoted = True
            else:
                self._cond.notify()  # a leader waiting out batch_timeout_micros may take it
        while True:
            if task.promoted:
                self._lead(task)
            if task.answered and not task.promoted:
                break
            task.wake.get()  # a token left from a change already seen only costs one more look
        if task.error is not None:
            raise task.error
        return task.outputs

    def stats(self) -> BatchStats:
        with self._cond:
            return self._stats

    def stop(self) -> None:
        """Nothing to stop: batches run on the requests' own threads (kept for the server's shutdown order)."""

    def _lead(self, own: _Task) -> None:
        """Run batches until `own` is answered or nothing is queued, then pass on or give up the lead."""
        while True:
            batch = self._take_batch(own)
            if batch is None:
                return  # nothing queued (own is in another leader's batch): the lead was given up
            self._execute(batch)
            if own.answered:
                with self._cond:
                    own.promoted = False
                    successor = next((task for task in self._queue if not task.promoted), None)
                    if successor is None:
                        self._leaders -= 1
                    else:
                        successor.promoted = True
                        successor.wake.put(None)
                return

    def _take_batch(self, leader: _Task) -> list[_Task] | None:
        """The next batch (the oldest request and compatible ones), or None after giving up the lead."""
        limit = self._params.max_batch_size
        with self._cond:
            if not self._queue:
                leader.promoted = False
                self._leaders -= 1
                return None
            first = self._queue.popleft()
            batch, total = [first], first.size
            deadline = time.monotonic() + self._params.batch_timeout_micros / 1e6
            while True:
                for task in [t for t in self._queue if t.key == first.key]:
                    if total + task.size <= limit:
                        self._queue.remove(task)
                        batch.append(task)
                        total += task.size
                remaining = deadline - time.monotonic()
                if total >= limit or remaining <= 0:
                    self._count(len(batch))
                    return batch
                self._cond.wait(remaining)

    def _count(self, requests: int) -> None:
        """Account for a batch about to run (called holding the queue's lock)."""
        stats = self._stats
        self._stats = BatchStats(stats.calls + 1, stats.requests + requests,
                                 stats.merged_calls + (requests > 1), max(stats.largest_batch, requests))

    def _execute(self, batch: list[_Task]) -> None:
        first = batch[0]
        if len(batch) == 1:
            self._run_alone(first)
        else:
            self._run_merged(batch)
        for task in batch:
            task.answered = True
            task.wake.put(None)

    def _run_merged(self, batch: list[_Task]) -> None:
        first = batch[0]
        merged = {name: np.concatenate([task.inputs[name] for task in batch]) for name in first.inputs}
        total = sum(task.size for task in batch)
        try:
            outputs = first.servable.run(first.signature, merged)
        except ServingError:
            outputs = None  # one bad request must not fail its neighbours: retry one by one
        except Exception as error:  # noqa: BLE001 - surfaced to every waiting request
            log.exception("batched call failed")
            for task in batch:
                task.error = ServingError(Code.INTERNAL, str(error))
            return
        if outputs is None or any(v.ndim == 0 or v.shape[0] != total for v in outputs.values()):
            for task in batch:
                self._run_alone(task)
            return
        offset = 0
        for task in batch:
            task.outputs = {name: value[offset:offset + task.size] for name, value in outputs.items()}
            offset += task.size

    @staticmethod
    def _run_alone(task: _Task) -> None:
        try:
            task.outputs = task.servable.run(task.signature, task.inputs)
        except ServingError as error:
            task.error = error
        except Exception as error:  # noqa: BLE001 - reported to the caller as INTERNAL
            log.exception("predict call failed")
            task.error = ServingError(Code.INTERNAL, str(error))
