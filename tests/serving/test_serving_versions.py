"""New versions under load, and half-written or broken versions, against the real server."""
from __future__ import annotations

import os
import shutil
import threading

from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving.client import RestClient
from tests.serving.serving_fixture_models import copy_version
from tests.serving.serving_test_support import UNSEEN_CUSTOMER, predict_request, wait_for


def version_states(client: RestClient, model: str) -> dict[int, tuple[str, str]]:
    return {int(v["version"]): (v["state"], v["status"]["error_code"])
            for v in client.model_status(model)["model_version_status"]}


def test_new_version_under_load_drops_no_request(server, exports):
    stop = threading.Event()
    failures: list[str] = []
    versions_seen: set[int] = set()
    counts = {"rest": 0, "grpc": 0}
    lock = threading.Lock()

    def rest_load() -> None:
        with server.rest() as client:
            while not stop.is_set():
                try:
                    assert len(client.predict("swap", instances=[UNSEEN_CUSTOMER])["predictions"]) == 1
                    with lock:
                        counts["rest"] += 1
                except Exception as error:  # noqa: BLE001 - every failure is recorded
                    failures.append(repr(error))

    def grpc_load() -> None:
        with server.channel() as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not stop.is_set():
                try:
                    response = stub.Predict(predict_request("swap", [UNSEEN_CUSTOMER]), timeout=30)
                    with lock:
                        versions_seen.add(response.model_spec.version.value)
                        counts["grpc"] += 1
                except Exception as error:  # noqa: BLE001
                    failures.append(repr(error))

    threads = [threading.Thread(target=target) for target in (rest_load, rest_load, grpc_load, grpc_load)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: counts["rest"] > 20 and counts["grpc"] > 20, "load to start")
        copy_version(exports.keras, str(exports.models / "swap"), 2)
        wait_for(lambda: 2 in versions_seen, "version 2 to be served")
        served_before = dict(counts)
        wait_for(lambda: counts["rest"] > served_before["rest"] + 20 and counts["grpc"] > served_before["grpc"] + 20,
                 "load to continue on version 2")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert versions_seen == {1, 2}
    with server.rest() as client:
        assert version_states(client, "swap") == {2: ("AVAILABLE", "OK"), 1: ("END", "OK")}


def test_half_written_and_broken_versions_are_refused_while_the_previous_serves(server, exports):
    base = exports.models / "fragile"
    with server.rest() as client:
        # The Pusher crashed after saved_model.pb: no variables.
        half = base / "2"
        half.mkdir()
        shutil.copy(os.path.join(exports.keras, "saved_model.pb"), half / "saved_model.pb")
        wait_for(lambda: version_states(client, "fragile").get(2, ("",))[0] == "END", "version 2 to be refused")
        states = version_states(client, "fragile")
        assert states[2][1] != "OK"
        assert states[1] == ("AVAILABLE", "OK")
        assert client.predict("fragile", instances=[UNSEEN_CUSTOMER])["predictions"]
        assert "Failed to load version 2 of model fragile" in server.log()

        # A corrupt version directory.
        broken = base / "3"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a protobuf")
        wait_for(lambda: version_states(client, "fragile").get(3, ("",))[0] == "END", "version 3 to be refused")
        assert version_states(client, "fragile")[1] == ("AVAILABLE", "OK")
        assert client.predict("fragile", instances=[UNSEEN_CUSTOMER])["predictions"]

        # Once the copy of version 2 completes it is retried; 3 stays refused, so 2 is the latest good one.
        for entry in os.listdir(exports.keras):
            source = os.path.join(exports.keras, entry)
            if os.path.isdir(source):
                shutil.copytree(source, half / entry)
            elif entry != "saved_model.pb":
                shutil.copy(source, half / entry)
        wait_for(lambda: version_states(client, "fragile")[2] == ("AVAILABLE", "OK"), "version 2 to load")
        assert version_states(client, "fragile")[1] == ("END", "OK")
        assert client.model_metadata("fragile")["model_spec"]["version"] == "2"

