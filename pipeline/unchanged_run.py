"""The up-to-date check before a run: when nothing the pipeline reads has changed, do not start it.

Re-running a pipeline whose spec, schema, data, code and options are those of the
last finished run gives every component back as CACHED (tests/test_caching.py),
but only after ~11 s of importing TensorFlow, TFX and Beam to find that out. This
check imports none of them. Its key covers what the pipeline reads:
- the data set spec and the run options (PipelineConfig), as values;
- the schema file's bytes;
- every file under the CSV data folder by path, size and modification time (what
  TFX's own FileBasedExampleGen fingerprints), so a new span or an edited file counts;
- every source file of this project, and the TFX, TensorFlow, Beam and TFMA versions.
It also requires the ML Metadata store to be byte-for-byte as that run left it
(another run or `compare` writing into it since means a full run) and the pushed
model to be in place. TFDS data sets always run (their files live in TFDS's cache).
`--no-cache` and `--no-shortcut` skip the check.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import pathlib
import time
from typing import Any

from pipeline.config import PipelineConfig
from specs.dataset import PROJECT_ROOT, DatasetSpec

log = logging.getLogger(__name__)

STATE_FILE = "last_run.json"
CODE_PACKAGES = ("specs", "models", "components", "pipeline", "serving")
VERSIONED = ("tfx", "tensorflow", "apache-beam", "tensorflow-model-analysis", "tensorflow-transform")


def _files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and "__pycache__" not in path.parts)


def code_fingerprint(root: pathlib.Path = PROJECT_ROOT) -> str:
    """sha256 over the project's Python sources (paths and bytes)."""
    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        for path in _files(root / package):
            if path.suffix == ".py":
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def data_fingerprint(folder: pathlib.Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of every file under the data folder."""
    return [(str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns)
            for path, stat in ((path, path.stat()) for path in _files(folder))]


def run_key(spec: DatasetSpec, config: PipelineConfig) -> str | None:
    """What a run reads, hashed; None when it cannot be had without TensorFlow (TFDS, remote data)."""
    if spec.source.get("kind") != "csv" or config.pipeline_root:
        return None
    data = pathlib.Path(config.input_base_for(spec))
    if not data.is_dir():
        return None
    parts = {
        "spec": dataclasses.asdict(spec),
        "config": dataclasses.asdict(config),
        "schema": hashlib.sha256(pathlib.Path(config.schema_for(spec)).read_bytes()).hexdigest(),
        "data": data_fingerprint(data),
        "code": code_fingerprint(),
        "versions": {name: _version(name) for name in VERSIONED},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _store_stamp(config: PipelineConfig, spec: DatasetSpec) -> list[int] | None:
    path = config.metadata_for(spec)
    if not path.exists():
        return None
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _state_path(config: PipelineConfig, spec: DatasetSpec) -> pathlib.Path:
    return config.home / spec.name / STATE_FILE


def record(spec: DatasetSpec, config: PipelineConfig, key: str | None, report: dict[str, Any],
           exit_code: int) -> None:
    """Remember a finished run (after its report is written, so the store stamp is final)."""
    state = _state_path(config, spec)
    if key is None or not config.enable_cache:
        state.unlink(missing_ok=True)
        return
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"key": key, "store": _store_stamp(config, spec), "exit_code": exit_code,
                                 "finished_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                 "report": report}, indent=2, default=str))


def unchanged_run(spec: DatasetSpec, config: PipelineConfig, key: str | None) -> dict[str, Any] | None:
    """The last run's record when this run would read exactly what it read, else None (run it)."""
    if key is None or not config.enable_cache:
        return None
    state = _state_path(config, spec)
    try:
        previous = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    if previous.get("key") != key:
        log.debug("up-to-date check: inputs changed since the last run")
        return None
    if previous.get("store") != _store_stamp(config, spec):
        log.info("ML Metadata changed since the last run (another run wrote to it): running the pipeline")
        return None
    pushed = previous["report"].get("pushed_path")
    if pushed and not os.path.exists(pushed):
        log.info("the last pushed model %s is gone: running the pipeline", pushed)
        return None
    return previous


def summary(spec: DatasetSpec, previous: dict[str, Any]) -> str:
    """What the console shows instead of a run."""
    report = previous["report"]
    lines = [f"Nothing changed since the run of {spec.name!r} finished at {previous['finished_at']}: same spec, "
             "schema, data files, code and options, and ML Metadata as it left it. Every component would be "
             "CACHED, so the pipeline was not started (--no-shortcut starts it anyway).",
             "Not re-evaluated: " + ("this model is already the blessed one."
                                     if report.get("blessed") else "this model was evaluated in that run.")]
    metrics = report.get("metrics") or {}
    if metrics:
        lines.append("Test split metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    if report.get("blessed") is False:
        lines.append("The model was NOT blessed in that run; nothing was pushed.")
    elif report.get("pushed_path"):
        lines.append(f"Pushed model: {report['pushed_path']}")
    if report.get("report_html"):
        lines.append(f"Run report: {report['report_html']}")
    return "\n".join(lines)
