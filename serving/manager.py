"""Keeps each model's served versions in step with its base path.

A poll thread scans `<base_path>/<version>/` directories. A version is loaded only
once its files stopped changing between two scans (the Pusher may still be
copying), is fully loaded and warmed up off the request path, and then the set of
served versions is replaced in one assignment: in-flight requests keep the
Servable they already hold. A version that fails to load is refused, logged, and
retried only when its files change; the versions already served stay served.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Iterable, Mapping

from serving.config import ModelEntry, RequestLogging
from serving.errors import Code, failed_precondition, invalid_argument, not_found
from serving.servable import Servable
from serving.versions import is_complete, local_version_dirs

log = logging.getLogger(__name__)

# Startup scans twice this far apart so a version still being copied is not loaded.
STARTUP_SETTLE_SECONDS = 0.3

Fingerprint = tuple


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """What GetModelStatus reports for one version (TF Serving's ModelVersionStatus)."""

    version: int
    state: str  # START | LOADING | AVAILABLE | UNLOADING | END
    error_code: Code | None = None  # None means OK
    error_message: str = ""


@dataclasses.dataclass
class _Model:
    entry: ModelEntry
    serving: Mapping[int, Servable] = dataclasses.field(default_factory=dict)  # replaced, never mutated
    statuses: dict[int, VersionStatus] = dataclasses.field(default_factory=dict)
    last_seen: dict[int, Fingerprint] = dataclasses.field(default_factory=dict)
    refused: dict[int, Fingerprint] = dataclasses.field(default_factory=dict)
    dir_names: dict[int, str] = dataclasses.field(default_factory=dict)  # version -> its directory
    warned_empty: bool = False


class ModelManager:
    """Owns the served Servables of every configured model."""

    def __init__(self, entries: Iterable[ModelEntry], poll_wait_seconds: float,
                 load: Callable[[str, int, str], Servable] = Servable.load,
                 allow_labels_for_unavailable: bool = False):
        self._poll_wait = poll_wait_seconds
        self._load_servable = load
        self._allow_labels_for_unavailable = allow_labels_for_unavailable
        self._labels: dict[str, Mapping[str, int]] = {}  # applied only once TF Serving's checks pass
        self._models: dict[str, _Model] = {entry.name: _Model(entry) for entry in entries}
        self._status_lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Load what is on disk now, then keep polling in the background if asked to.

        Raises ServingError (FAILED_PRECONDITION) when a version label names a version
        that is not available, as TF Serving refuses to start then.
        """
        self._settled_poll()
        self._update_labels()
        if self._poll_wait > 0:
            self._thread = threading.Thread(target=self._poll_loop, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop polling and close every served version (call after the transports stopped)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._poll_lock:
            for model in self._models.values():
                served, model.serving = model.serving, {}
                for servable in served.values():
                    servable.close()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_wait):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must survive anything
                log.exception("model poll failed; will retry")

    def update_entries(self, entries: Iterable[ModelEntry]) -> None:
        """Apply a re-read model config: add, drop or re-policy models."""
        with self._poll_lock:
            models = {}
            for entry in entries:
                model = self._models.get(entry.name)
                if model is None or model.entry.base_path != entry.base_path:
                    model = _Model(entry)  # a new base path: versions there are other models
                model.entry = entry
                models[entry.name] = model
            for name, model in self._models.items():
                if name not in models:
                    log.info("model %s removed from config; unloading versions %s", name, sorted(model.serving))
            self._models = models
        self._settled_poll()
        self._update_labels()

    def _update_labels(self) -> None:
        """TF Serving's UpdateModelVersionLabelMap: labels must name AVAILABLE versions.

        With --allow_version_labels_for_unavailable_models a label may name any version,
        unless it already names another one.
        """
        labels: dict[str, Mapping[str, int]] = {}
        for name, model in self._models.items():
            for label, version in model.entry.labels.items():
                existing = self._labels.get(name, {}).get(label)
                allowed = self._allow_labels_for_unavailable and existing in (None, version)
                status = model.statuses.get(version)
                if not allowed and (status is None or status.state != "AVAILABLE"):
                    raise failed_precondition(
                        f"Request to assign label to version {version} of model {name}, "
                        "which is not currently available for inference")
            labels[name] = dict(model.entry.labels)
        self._labels = labels

    def _settled_poll(self) -> None:
        """Two scans a moment apart, so versions already on disk load without waiting for the poller."""
        self.poll_once()
        time.sleep(STARTUP_SETTLE_SECONDS)
        self.poll_once()

    # -- polling -----------------------------------------------------------------

    def poll_once(self) -> None:
        with self._poll_lock:
            for model in list(self._models.values()):
                self._sync(model)

    def _sync(self, model: _Model) -> None:
        entry = model.entry
        on_disk = _scan(entry.base_path)
        if not on_disk:
            if not model.warned_empty:
                log.warning("No versions of servable %s found under base path %s", entry.name, entry.base_path)
                model.warned_empty = True
            return  # never unload everything because a directory briefly looks empty
        model.warned_empty = False
        settled = {v: fp for v, fp in on_disk.items() if model.last_seen.get(v) == fp}
        model.last_seen = on_disk
        loadable = {v for v, fp in settled.items() if model.refused.get(v) != fp}
        loadable |= set(model.serving) & set(on_disk)
        model.dir_names = {v: name for v, (name, _) in on_disk.items()}

        fresh: dict[int, Servable] = {}
        while True:
            wanted = entry.policy.select(loadable)
            pending = sorted((v for v in wanted if v not in model.serving and v not in fresh), reverse=True)
            if not pending:
                break
            for version in pending:
                servable = self._load(model, version, on_disk[version])
                if servable is None:
                    loadable.discard(version)
                else:
                    fresh[version] = servable

        serving = {v: model.serving.get(v) or fresh[v] for v in wanted}
        if serving.keys() == model.serving.keys():
            return
        previous = model.serving
        model.serving = serving  # the atomic swap
        log.info("Model %s now serves versions %s (was %s)", entry.name, sorted(serving), sorted(previous))
        for version in set(previous) - set(serving):
            self._set_status(model, VersionStatus(version, "END"))
            log.info("Unloaded servable version {name: %s version: %d}", entry.name, version)

    def _load(self, model: _Model, version: int, fingerprint: Fingerprint) -> Servable | None:
        name, path = model.entry.name, os.path.join(model.entry.base_path, model.dir_names[version])
        self._set_status(model, VersionStatus(version, "LOADING"))
        log.info("Loading servable version {name: %s version: %d} from %s", name, version, path)
        started = time.monotonic()
        try:
            servable = self._load_servable(name, version, path)
        except Exception as error:  # noqa: BLE001 - any load failure refuses the version
            model.refused[version] = fingerprint
            message = f"Failed to load version {version} of model {name} from {path}: {error}"
            self._set_status(model, VersionStatus(version, "END", Code.UNKNOWN, message))
            log.error("%s; still serving versions %s", message, sorted(model.serving))
            return None
        model.refused.pop(version, None)
        self._set_status(model, VersionStatus(version, "AVAILABLE"))
        log.info("Successfully loaded servable version {name: %s version: %d} in %.2f s",
                 name, version, time.monotonic() - started)
        return servable

    def _set_status(self, model: _Model, status: VersionStatus) -> None:
        with self._status_lock:
            model.statuses[status.version] = status

    # -- request-time lookups -------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        """The configured models, as of the last config (re)load, in config order."""
        return [model.entry for model in self._models.values()]

    def request_logging(self, name: str) -> RequestLogging | None:
        """The model's logging_config as of the last config (re)load (looked up on every request)."""
        model = self._models.get(name)
        return model.entry.logging if model is not None else None

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The Servable a request addresses (latest when neither version nor label is given)."""
        model = self._models.get(name)
        if label is not None and model is not None:
            version = self._label_version(name, label)
        serving = model.serving if model is not None else {}
        if version is None:
            if not serving:
                raise not_found(f"Servable not found for request: Latest({name})")
            return serving[max(serving)]
        servable = serving.get(version)
        if servable is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def statuses(self, name: str, version: int | None = None, label: str | None = None) -> list[VersionStatus]:
        model = self._models.get(name)
        if model is None:
            raise not_found(f"Could not find any versions of model {name}")
        if label is not None:
            version = self._label_version(name, label)
        with self._status_lock:
            statuses = dict(model.statuses)
        if version is not None:
            if version not in statuses:
                raise not_found(f"Could not find version {version} of model {name}")
            return [statuses[version]]
        if not statuses:
            raise not_found(f"Could not find any versions of model {name}")
        return [statuses[v] for v in sorted(statuses, reverse=True)]

    def _label_version(self, name: str, label: str) -> int:
        version = self._labels.get(name, {}).get(label)
        if version is None:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return version


def _scan(base_path: str) -> dict[int, Fingerprint]:
    """Complete version dirs (serving.versions' rule), each with (dir name, fingerprint of its files).

    The dir name is part of the fingerprint: `7/` replaced by `007/` is a change.
    """
    versions = {}
    for version, name in local_version_dirs(base_path).items():
        path = os.path.join(base_path, name)
        if is_complete(path):
            versions[version] = (name, _fingerprint(path))
    return versions


def _fingerprint(path: str) -> Fingerprint:
    entries = []
    for root, _, files in os.walk(path):
        for file_name in files:
            full = os.path.join(root, file_name)
            try:
                stat = os.stat(full)
            except OSError:  # vanished mid-scan: the version is still changing
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))
