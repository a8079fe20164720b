"""Data set specs: a data set described as data (source, features, label, task).

Generic pipeline, Transform and Trainer code act on a `DatasetSpec`; adding a CSV
data set takes a YAML file in `specs/datasets/` and a curated schema in
`schemas/<name>/schema.pbtxt`, no new code.
"""
from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Any, Mapping

import yaml

from specs.errors import SpecError

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS_DIR = pathlib.Path(__file__).resolve().parent / "datasets"

TASKS = ("binary_classification", "multiclass_classification", "regression")
TRAINERS = ("keras", "estimator", "premade", "tfdf")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")  # tf.distribute, see models/strategies.py
# train: fitting and Transform's statistics; validation: early stopping, checkpoint choice,
# tuning, operating points; test: the Evaluator's gate and every reported figure, nothing else.
SPLITS = ("train", "validation", "test")
DEFAULT_SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}


def clean_feature_name(header: str) -> str:
    """Turns a CSV header into a valid feature name.

    The rule (documented in the README): runs of characters other than letters,
    digits and `_` become one `_`, leading/trailing `_` are stripped, case is
    kept, and a name starting with a digit gets a leading `f_`.
    `"fixed acidity"` -> `fixed_acidity`, `CreditScore` -> `CreditScore`.
    """
    name = re.sub(r"[^0-9A-Za-z_]+", "_", header.strip()).strip("_")
    if not name:
        raise SpecError(f"CSV header {header!r} has no usable characters for a feature name")
    return f"f_{name}" if name[0].isdigit() else name


def check_split_fractions(name: str, splits: Mapping[str, float]) -> None:
    """`splits` gives each of train/validation/test a share of the rows, in hundredths, summing to 1."""
    if set(splits) != set(SPLITS):
        raise SpecError(f"{name}: splits must give fractions for exactly {', '.join(SPLITS)}, got {dict(splits)}; "
                        "e.g. splits: {train: 0.7, validation: 0.1, test: 0.2}")
    for split, fraction in splits.items():
        if not 0.0 < float(fraction) < 1.0 or abs(float(fraction) * 100 - round(float(fraction) * 100)) > 1e-6:
            raise SpecError(f"{name}: splits.{split} must be a fraction in hundredths between 0 and 1, got {fraction}")
    if abs(sum(float(f) for f in splits.values()) - 1.0) > 1e-6:
        raise SpecError(f"{name}: split fractions {dict(splits)} must sum to 1")


def check_operating_point(name: str, task: str, point: Mapping[str, Any] | None) -> None:
    """`model.operating_point`: {target: f1} or {target: recall, value: 0..1}, binary tasks only."""
    if not point:
        return
    if task != "binary_classification":
        raise SpecError(f"{name}: model.operating_point needs a binary_classification task")
    if point.get("target") == "f1" or (point.get("target") == "recall" and 0.0 < float(point.get("value", 0)) <= 1.0):
        return
    raise SpecError(f"{name}: model.operating_point must be {{target: f1}} or {{target: recall, value: 0..1}}, "
                    f"got {dict(point)}")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One data set: where it comes from, what to predict, and how to judge a model."""

    name: str
    task: str
    label: str
    source: Mapping[str, Any]
    numeric_features: tuple[str, ...] = ()
    categorical_features: tuple[str, ...] = ()
    image_feature: str | None = None
    label_names: tuple[str, ...] = ()
    splits: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_SPLIT_FRACTIONS))
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    evaluation: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tuning: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    candidates: tuple[Mapping[str, Any], ...] = ()  # partial model blocks for `pipeline compare`
    example_instance: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise SpecError(f"{self.name}: task {self.task!r} is not one of {', '.join(TASKS)}")
        check_split_fractions(self.name, self.splits)
        features = self.feature_names
        if not features:
            raise SpecError(f"{self.name}: the spec declares no features")
        if self.label in features:
            raise SpecError(f"{self.name}: label {self.label!r} is also listed as a feature")
        if len(set(features)) != len(features):
            raise SpecError(f"{self.name}: a feature is listed twice in {features}")
        check_operating_point(self.name, self.task, self.model.get("operating_point"))
        trainer = self.model.get("trainer", "keras")
        if trainer not in TRAINERS:
            raise SpecError(f"{self.name}: model.trainer {trainer!r} is not one of {', '.join(TRAINERS)}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        image = (self.image_feature,) if self.image_feature else ()
        return self.numeric_features + self.categorical_features + image

    @property
    def is_classification(self) -> bool:
        return self.task != "regression"

    @property
    def num_classes(self) -> int:
        """Number of classes (2 for binary); 1 output for regression."""
        if self.task == "binary_classification":
            return 2
        if self.task == "regression":
            return 1
        if not self.label_names:
            raise SpecError(f"{self.name}: multiclass_classification needs label_names")
        return len(self.label_names)

    @property
    def schema_path(self) -> pathlib.Path:
        return PROJECT_ROOT / "schemas" / self.name / "schema.pbtxt"

    @property
    def default_trainer(self) -> str:
        return self.model.get("trainer", "keras")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, passed to Transform/Trainer as custom_config."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "DatasetSpec":
        """Builds a spec from its YAML form (nested `features`) or its `to_dict` form."""
        raw = dict(raw)
        features = raw.pop("features", None) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known - {"features"}
        if unknown:
            raise SpecError(f"{raw.get('name', '?')}: unknown spec keys {sorted(unknown)}")
        for key, value in (("numeric_features", features.get("numeric")),
                           ("categorical_features", features.get("categorical")),
                           ("image_feature", features.get("image"))):
            if value is not None:
                raw[key] = value
        for key in ("numeric_features", "categorical_features", "label_names"):
            if key in raw:
                raw[key] = tuple(raw[key])
        missing = {"name", "task", "label", "source"} - set(raw)
        if missing:
            raise SpecError(f"{raw.get('name', '?')}: spec is missing {sorted(missing)}")
        return cls(**raw)


def available_datasets() -> list[str]:
    return sorted(p.stem for p in SPECS_DIR.glob("*.yaml"))


def load_spec(name: str) -> DatasetSpec:
    """Loads `specs/datasets/<name>.yaml`; the error lists the known data sets."""
    path = SPECS_DIR / f"{name}.yaml"
    if not path.exists():
        raise SpecError(f"unknown data set {name!r}; known data sets: {', '.join(available_datasets())}")
    with path.open() as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    if raw.get("name") != name:
        raise SpecError(f"{path}: 'name' must be {name!r} (the file name), got {raw.get('name')!r}")
    return DatasetSpec.from_dict(raw)
