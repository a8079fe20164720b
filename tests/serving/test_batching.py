"""The dynamic batcher on a real SavedModel: merged calls, and every answer back to its own request.

The model is the fixture's TF1 `predict_raw` signature, y = 2x + 1 in float32,
exact for the small integers sent here, so a row answered from another request's
slice cannot pass unnoticed.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

from serving.batching import Batcher, BatchingParameters, parse_batching_parameters
from serving.servable import Servable
from tests.serving.serving_fixture_models import build_estimator_like

CLIENTS = 12


@pytest.fixture(scope="module")
def servable(tmp_path_factory) -> Servable:
    path = build_estimator_like(str(tmp_path_factory.mktemp("batching") / "model"))
    return Servable.load("linear", 1, path)


def send_concurrently(batcher: Batcher, servable: Servable) -> tuple[dict, dict, list]:
    """CLIENTS threads released together, each with its own rows (1 to 3 of them)."""
    sent, answers, failures = {}, {}, []
    start = threading.Barrier(CLIENTS)

    def client(index: int) -> None:
        rows = np.array([100.0 * index + k for k in range(1 + index % 3)], dtype=np.float32)
        sent[index] = rows
        start.wait()
        try:
            answers[index] = batcher.run(servable, "predict_raw", {"x": rows})["y"]
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(repr(error))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent, answers, failures


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows(servable):
    # One batcher thread that waits up to 0.5 s for company: concurrent requests must share calls.
    batcher = Batcher(BatchingParameters(max_batch_size=64, batch_timeout_micros=500_000, num_batch_threads=1))
    try:
        sent, answers, failures = send_concurrently(batcher, servable)
    finally:
        batcher.stop()
    assert failures == []
    for index, rows in sent.items():
        np.testing.assert_array_equal(answers[index], 2 * rows + 1)
    stats = batcher.stats()
    assert stats.requests == CLIENTS
    assert stats.merged_calls >= 1
    assert stats.calls < CLIENTS
    assert stats.largest_batch > 1


def test_max_batch_size_bounds_a_merged_call(servable):
    batcher = Batcher(BatchingParameters(max_batch_size=4, batch_timeout_micros=200_000, num_batch_threads=1))
    try:
        sent, answers, failures = send_concurrently(batcher, servable)
    finally:
        batcher.stop()
    assert failures == []
    for index, rows in sent.items():
        np.testing.assert_array_equal(answers[index], 2 * rows + 1)
    # Rows per call never exceed 4, so the 24 rows sent need at least 6 calls.
    assert batcher.stats().calls >= sum(len(rows) for rows in sent.values()) / 4


def test_batching_parameters_file_is_tf_serving_text():
    params = parse_batching_parameters("""
        max_batch_size { value: 32 }  # comment
        batch_timeout_micros { value: 1000 }
        num_batch_threads { value: 3 }
    """)
    assert params == BatchingParameters(max_batch_size=32, batch_timeout_micros=1000, num_batch_threads=3)
