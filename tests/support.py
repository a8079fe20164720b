"""Helpers for tests: small real samples of the project's data and isolated pipeline homes."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

from pipeline.config import PipelineConfig
from specs.dataset import DatasetSpec


def write_sample(source: pathlib.Path, target_dir: pathlib.Path, rows: int, name: str | None = None) -> pathlib.Path:
    """Header plus the first `rows` data lines of a real CSV file."""
    target_dir.mkdir(parents=True, exist_ok=True)
    lines = source.read_text().splitlines(keepends=True)
    target = target_dir / (name or source.name)
    target.write_text("".join(lines[: rows + 1]))
    return target


def isolated_config(home: pathlib.Path, **overrides: Any) -> PipelineConfig:
    """An isolated run: its own pipeline root, ML Metadata and serving dir under `home`."""
    return dataclasses.replace(PipelineConfig(home=home / "runs", serving_dir=home / "serving"), **overrides)


def without_no_regression_gate(spec: DatasetSpec) -> DatasetSpec:
    """The spec without its no-regression gate: for runs that share one store but must each be
    blessed on their own merits, not against the model blessed before them."""
    return dataclasses.replace(spec, evaluation={k: v for k, v in spec.evaluation.items()
                                                 if k != "no_regression_metric"})
