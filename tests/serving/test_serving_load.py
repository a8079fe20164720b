"""A bounded load test: several client threads, a few hundred requests, no errors."""
from __future__ import annotations

import threading

import pytest

from tests.serving.serving_test_support import UNSEEN_CUSTOMER, assert_server_alive

THREADS = 8
REQUESTS_PER_THREAD = 50


def test_concurrent_clients_get_correct_answers(server, rest):
    reference = rest.predict("churn", instances=[UNSEEN_CUSTOMER])["predictions"][0]
    failures: list[str] = []
    answered = []

    def client_thread(index: int) -> None:
        with server.rest() as client:
            for i in range(REQUESTS_PER_THREAD):
                try:
                    rows = [UNSEEN_CUSTOMER] * (1 + (index + i) % 3)  # mixed batch sizes exercise batching
                    predictions = client.predict("churn", instances=rows)["predictions"]
                    assert len(predictions) == len(rows)
                    for prediction in predictions:  # batch size may change the last float bit
                        assert prediction["classes"] == reference["classes"]
                        assert prediction["probability"] == pytest.approx(reference["probability"], rel=1e-5)
                    answered.append(len(rows))
                except Exception as error:  # noqa: BLE001 - every failure is recorded
                    failures.append(repr(error))

    threads = [threading.Thread(target=client_thread, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(answered) == THREADS * REQUESTS_PER_THREAD
    assert_server_alive(rest)
