"""Shared fixtures: the churn spec and a small real sample of its CSV."""
from __future__ import annotations

import pathlib

import pytest

from specs.dataset import PROJECT_ROOT, DatasetSpec, load_spec
from tests.support import write_sample


@pytest.fixture(scope="session")
def churn_spec() -> DatasetSpec:
    return load_spec("churn")


@pytest.fixture(scope="session")
def churn_sample(tmp_path_factory) -> pathlib.Path:
    """1,500 real rows of the churn CSV (enough for a blessed model at a relaxed threshold)."""
    directory = tmp_path_factory.mktemp("churn_sample")
    write_sample(PROJECT_ROOT / "data/churn/Churn_Modelling.csv", directory, 1500)
    return directory
