"""Shared fixtures (the churn spec and a small real sample of its CSV) and the order tests run in."""
from __future__ import annotations

import pathlib

import pytest

from specs.dataset import PROJECT_ROOT, DatasetSpec, load_spec
from tests.support import write_sample

# `make test` runs two pytest-xdist workers (`--dist loadfile --no-loadscope-reorder`). Each module
# stays on one worker (its module fixtures run whole pipelines that its tests share), and workers take
# modules in this order, longest first, so that both finish at about the same time. Modules not named
# here follow in file order.
LONGEST_FIRST = (
    "test_churn_pipeline", "test_report", "test_backbones", "test_estimator_modes", "test_reproducible_runs",
    "test_images_pipeline", "test_console_browser", "test_spans", "test_bad_csv", "test_tuning", "test_compare",
    "test_train_cluster", "test_monitor_e2e", "test_tf_serving_compat", "test_preprocessing_and_model", "test_images",
    "test_request_log",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    # Stable: each module's tests stay together and in their own order.
    items.sort(key=lambda item: rank.get(pathlib.Path(item.nodeid.split("::")[0]).stem, len(rank)))


@pytest.fixture(scope="session")
def churn_spec() -> DatasetSpec:
    return load_spec("churn")


@pytest.fixture(scope="session")
def churn_sample(tmp_path_factory) -> pathlib.Path:
    """1,500 real rows of the churn CSV (enough for a blessed model at a relaxed threshold)."""
    directory = tmp_path_factory.mktemp("churn_sample")
    write_sample(PROJECT_ROOT / "data/churn/Churn_Modelling.csv", directory, 1500)
    return directory
