"""Trainer mode `tfdf`: gradient-boosted trees from TensorFlow Decision Forests on the Transform output.

As TFX's penguin example does (`penguin_utils_tfdf_experimental.py`): one pass
over the unshuffled transformed examples, the validation split given as
`validation_data` (GBT's early stopping then watches it instead of holding out
part of train), and the export through the same signatures as the Keras modes,
so the served outputs are the same. The model needs TF-DF's custom ops wherever
it is loaded: in Python `import tensorflow_decision_forests` (`serving.custom_ops`,
used by `pipeline compare` and `predict`); TF Serving needs a build with TF-DF ops.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import tensorflow_decision_forests as tfdf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from models import operating_point, signatures
from models.history import TrainingHistory
from models.keras_trainer import make_dataset
from specs.dataset import DatasetSpec

log = logging.getLogger(__name__)


def make_model(spec: DatasetSpec, hparams: Mapping[str, Any]) -> tfdf.keras.GradientBoostedTreesModel:
    """GBT over every transformed feature; vocabulary ids are ordinal inputs (splits can isolate any id)."""
    if spec.image_feature:
        raise ValueError(f"{spec.name}: the tfdf trainer takes tabular features only; use --trainer keras for images")
    task = tfdf.keras.Task.REGRESSION if spec.task == "regression" else tfdf.keras.Task.CLASSIFICATION
    features = [tfdf.keras.FeatureUsage(name, tfdf.keras.FeatureSemantic.NUMERICAL)
                for name in spec.numeric_features + spec.categorical_features]
    return tfdf.keras.GradientBoostedTreesModel(
        task=task, features=features, exclude_non_specified_features=True,
        num_trees=int(hparams.get("num_trees", 300)), max_depth=int(hparams.get("max_depth", 6)),
        shrinkage=float(hparams.get("shrinkage", 0.1)), subsample=float(hparams.get("subsample", 1.0)),
        min_examples=int(hparams.get("min_examples", 5)), random_seed=int(hparams["seed"]), verbose=0)


def train(fn_args: FnArgs, spec: DatasetSpec, hparams: Mapping[str, Any]) -> None:
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    batch_size, seed = int(hparams.get("batch_size", 256)), int(hparams["seed"])
    train_ds = make_dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec,
                            batch_size, seed, shuffle=False)
    validation_ds = make_dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, spec,
                                 batch_size, seed, shuffle=False)
    model = make_model(spec, hparams)
    model.fit(train_ds, validation_data=validation_ds)
    trees = model.make_inspector().num_trees()
    history = TrainingHistory(fn_args.model_run_dir, "tfdf")
    history.record(1, 1, {"num_trees": trees})
    history.choose(1, f"{trees} trees kept by early stopping on the validation split")
    point = hparams.get("operating_point")  # served class_ids at the threshold chosen on validation, as keras
    threshold = operating_point.choose_and_record(*operating_point.keras_validation_scores(model, validation_ds),
                                                  point, fn_args.model_run_dir) if point else 0.5
    signatures.export_keras_model(model, spec, tf_transform_output, fn_args.serving_model_dir, threshold)
