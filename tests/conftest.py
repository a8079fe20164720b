"""Shared fixtures: small real samples of the project's data and isolated pipeline homes."""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest

from pipeline.config import PipelineConfig
from pipeline.specs import PROJECT_ROOT, DatasetSpec, load_spec


def write_sample(source: pathlib.Path, target_dir: pathlib.Path, rows: int, name: str | None = None) -> pathlib.Path:
    """Header plus the first `rows` data lines of a real CSV file."""
    target_dir.mkdir(parents=True, exist_ok=True)
    lines = source.read_text().splitlines(keepends=True)
    target = target_dir / (name or source.name)
    target.write_text("".join(lines[: rows + 1]))
    return target


def test_config(home: pathlib.Path, **overrides: Any) -> PipelineConfig:
    """An isolated run: its own pipeline root, ML Metadata and serving dir under `home`."""
    return dataclasses.replace(PipelineConfig(home=home / "runs", serving_dir=home / "serving"), **overrides)


test_config.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def churn_spec() -> DatasetSpec:
    return load_spec("churn")


@pytest.fixture(scope="session")
def churn_sample(tmp_path_factory) -> pathlib.Path:
    """1,500 real rows of the churn CSV (enough for a blessed model at a relaxed threshold)."""
    directory = tmp_path_factory.mktemp("churn_sample")
    write_sample(PROJECT_ROOT / "data/churn/Churn_Modelling.csv", directory, 1500)
    return directory
