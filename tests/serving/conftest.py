"""Fixtures: small models built in a temp dir and one real server process shared by the tests.

The server is started as `python -m serving serve` on free local ports, exactly as
a user would run it; importing TensorFlow costs ~15 s, so it is started once.
"""
from __future__ import annotations

import dataclasses
import os
import textwrap
from pathlib import Path

import pytest

from serving.demo import stop_process
from tests.serving.serving_fixture_models import build_estimator_like, build_keras_classifier, copy_version
from tests.serving.serving_test_support import MAX_BODY_BYTES, ServerProcess, start_server

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclasses.dataclass
class Exports:
    keras: str
    estimator: str
    models: Path  # holds one base path per served model


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> Exports:
    root = tmp_path_factory.mktemp("serving")
    keras = build_keras_classifier(str(root / "exports" / "keras"))
    estimator = build_estimator_like(str(root / "exports" / "estimator"))
    models = root / "models"
    for name, source, versions in [("churn", keras, [1]), ("estimator", estimator, [1]),
                                   ("multi", keras, [1, 2]), ("swap", keras, [1]), ("fragile", keras, [1])]:
        (models / name).mkdir(parents=True)
        for version in versions:
            copy_version(source, str(models / name), version)
    return Exports(keras, estimator, models)


@pytest.fixture(scope="session")
def server(exports: Exports, tmp_path_factory) -> ServerProcess:
    root = tmp_path_factory.mktemp("server")
    config = root / "models.config"
    base = exports.models
    config.write_text(textwrap.dedent(f"""\
        model_config_list {{
          config {{ name: "churn" base_path: "{base / 'churn'}" model_platform: "tensorflow" }}
          config {{ name: "estimator" base_path: "{base / 'estimator'}" model_platform: "tensorflow" }}
          config {{
            name: "multi" base_path: "{base / 'multi'}"
            model_version_policy {{ all {{}} }}
            version_labels {{ key: "stable" value: 1 }}
            version_labels {{ key: "canary" value: 2 }}
          }}
          config {{
            name: "pinned" base_path: "{base / 'multi'}"
            model_version_policy {{ specific {{ versions: 1 }} }}
          }}
          config {{ name: "swap" base_path: "{base / 'swap'}" }}
          config {{ name: "fragile" base_path: "{base / 'fragile'}" }}
        }}
        """))
    server = start_server(
        [f"--model_config_file={config}", "--enable_batching", "--file_system_poll_wait_seconds=0.3",
         f"--rest_api_max_body_bytes={MAX_BODY_BYTES}"],
        root / "server.log", wait_for=["churn", "estimator", "multi", "pinned", "swap", "fragile"])
    yield server
    stop_process(server.process)
    assert server.process.returncode == 0, server.log()


@pytest.fixture()
def rest(server: ServerProcess):
    with server.rest() as client:
        yield client


@pytest.fixture(scope="session")
def channel(server: ServerProcess):
    with server.channel() as channel:
        yield channel


@pytest.fixture(scope="session")
def keras_model(exports: Exports):
    """The churn-like export loaded in-process: the reference answers come from here."""
    import tensorflow as tf

    return tf.saved_model.load(exports.keras)
