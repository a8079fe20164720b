"""The statistics baked into a Transform graph: z-score means/variances and vocabularies.

tf.Transform keeps analyzer results as constants of the graph, with no
accessor. The graph itself answers: every numeric feature is z-scored
(`(x - mean) / std`, models/preprocessing.py), so transforming x = 0 and x = 1
with TFTransformOutput gives std = 1 / (t1 - t0) and mean = -t0 * std, exactly
the values the served model applies. Vocabularies come from tft's own accessor.
"""
from __future__ import annotations

from typing import Sequence

from models.preprocessing import vocabulary_name
from specs.dataset import DatasetSpec


def _probe_batch(raw_feature_spec: dict) -> dict:
    """Two raw examples: 0 and 1 in every numeric feature, empty strings elsewhere."""
    import tensorflow as tf
    batch = {}
    for name, feature in raw_feature_spec.items():
        shape = [2] + list(getattr(feature, "shape", []) or [1])
        if feature.dtype == tf.string:
            batch[name] = tf.fill(shape, "")
        else:
            batch[name] = tf.cast(tf.reshape(tf.repeat(tf.constant([0.0, 1.0]), int(tf.reduce_prod(shape[1:]))),
                                             shape), feature.dtype)
        if not hasattr(feature, "shape"):  # VarLenFeature: a SparseTensor input
            batch[name] = tf.sparse.from_dense(batch[name])
    return batch


def z_score_parameters(transform_uri: str, features: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Feature -> (mean, variance) the Transform graph applies, read back through the graph."""
    import tensorflow_transform as tft
    if not features:
        return {}
    output = tft.TFTransformOutput(transform_uri)
    transformed = output.transform_raw_features(_probe_batch(output.raw_feature_spec()), drop_unused_features=True)
    parameters = {}
    for name in features:
        low, high = (float(v) for v in transformed[name].numpy().reshape(2, -1)[:, 0])
        std = 1.0 / (high - low) if high != low else float("nan")
        parameters[name] = (-low * std, std * std)
    return parameters


def vocabularies(transform_uri: str, features: Sequence[str]) -> dict[str, list[str]]:
    import tensorflow_transform as tft
    output = tft.TFTransformOutput(transform_uri)
    return {name: [v.decode() if isinstance(v, bytes) else str(v)
                   for v in output.vocabulary_by_name(vocabulary_name(name))] for name in features}


def analyzer_outputs(transform_uri: str, spec: DatasetSpec) -> tuple[dict[str, tuple[float, float]],
                                                                     dict[str, list[str]]]:
    """(numeric feature -> (mean, variance), categorical feature -> vocabulary) of this Transform graph."""
    return (z_score_parameters(transform_uri, spec.numeric_features),
            vocabularies(transform_uri, spec.categorical_features))
