"""Pusher that does not re-publish a model TF Serving already serves.

TFX's Pusher copies every blessed model to a new timestamped version. On the
second run with unchanged inputs the Evaluator re-checks the cached model against
itself as the new baseline and blesses it again; the stock Pusher would then
publish an identical copy as a new version, making every server reload it.
This executor records the existing version instead when the latest pushed version
has the same files, byte for byte.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any

from absl import logging
from tfx import types
from tfx.components import Pusher as TfxPusher
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from serving.versions import version_dirs


def tree_digest(directory: str) -> str:
    """Digest of every file's relative path and bytes under `directory`."""
    digest = hashlib.sha256()
    for root, _, files in sorted(fileio.walk(directory)):
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, directory).encode())
            with fileio.open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def latest_version_dir(base_directory: str) -> str | None:
    """Newest complete version under a TF Serving base path (local or URI).

    Version names follow TF Serving's rule (serving.versions, the server's own
    scanner). Complete means `saved_model.pb` is there: the Pusher copies it
    last, so a version without it is still being written.
    """
    if not fileio.exists(base_directory):
        return None
    by_version = version_dirs(name.rstrip("/") for name in fileio.listdir(base_directory))
    complete = [os.path.join(base_directory, name) for _, name in sorted(by_version.items(), reverse=True)
                if fileio.exists(os.path.join(base_directory, name, "saved_model.pb"))]
    return complete[0] if complete else None


class Executor(pusher_executor.Executor):
    """Skips the copy when the blessed model is byte-identical to the latest pushed version."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        destination = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], pusher_pb2.PushDestination())
        latest = latest_version_dir(destination.filesystem.base_directory)
        if latest and self.CheckBlessing(input_dict):
            model_path = self.GetModelPath(input_dict)
            if tree_digest(model_path) == tree_digest(latest):
                model_push = artifact_utils.get_single_instance(
                    output_dict[standard_component_specs.PUSHED_MODEL_KEY])
                io_utils.copy_dir(model_path, model_push.uri)
                self._MarkPushed(model_push, pushed_destination=latest, pushed_version=os.path.basename(latest))
                logging.info("Model is already served as %s; not pushing a copy.", latest)
                return
        super().Do(input_dict, output_dict, exec_properties)


class Pusher(TfxPusher):
    """TFX's Pusher with the executor above (a subclass, as TFX asks, not the deprecated
    `custom_executor_spec`, which logs a deprecation warning on every run)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
