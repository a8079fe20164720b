"""Output layer, loss and prediction outputs per task, kept consistent in one place.

Builders end in probabilities (sigmoid/softmax) and compile with
`from_logits=False`; `check_logits_agree` refuses the lecture's mistake of a
softmax output trained with `from_logits=True` (or logits without it).
"""
from __future__ import annotations

import tensorflow as tf

from specs.dataset import DatasetSpec

PROBABILITY_ACTIVATIONS = ("sigmoid", "softmax")


def output_layer(spec: DatasetSpec) -> tf.keras.layers.Layer:
    if spec.task == "binary_classification":
        return tf.keras.layers.Dense(1, activation="sigmoid", name="probability")
    if spec.task == "multiclass_classification":
        return tf.keras.layers.Dense(spec.num_classes, activation="softmax", name="probabilities")
    return tf.keras.layers.Dense(1, name="prediction")


def loss_for(spec: DatasetSpec) -> tf.keras.losses.Loss:
    if spec.task == "binary_classification":
        return tf.keras.losses.BinaryCrossentropy(from_logits=False)
    if spec.task == "multiclass_classification":
        return tf.keras.losses.SparseCategoricalCrossentropy(from_logits=False)
    return tf.keras.losses.MeanSquaredError()


def metrics_for(spec: DatasetSpec) -> list:
    if spec.task == "binary_classification":
        return [tf.keras.metrics.BinaryAccuracy(name="accuracy"), tf.keras.metrics.AUC(name="auc")]
    if spec.task == "multiclass_classification":
        return [tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    return [tf.keras.metrics.MeanAbsoluteError(name="mae")]


def _final_activation(model: tf.keras.Model) -> str | None:
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", None)


def check_logits_agree(model: tf.keras.Model, loss: tf.keras.losses.Loss) -> None:
    """Raises if the last layer's activation and the loss's `from_logits` disagree."""
    from_logits = bool(getattr(loss, "get_config", dict)().get("from_logits", False))
    activation = _final_activation(model)
    if from_logits and activation in PROBABILITY_ACTIVATIONS:
        raise ValueError(f"the model ends in {activation} (probabilities) but the loss has "
                         "from_logits=True: it would apply softmax/sigmoid twice; use from_logits=False")
    if not from_logits and activation == "linear" and isinstance(
            loss, (tf.keras.losses.BinaryCrossentropy, tf.keras.losses.SparseCategoricalCrossentropy,
                   tf.keras.losses.CategoricalCrossentropy)):
        raise ValueError("the model ends in logits (no activation) but the loss expects probabilities; "
                         "use from_logits=True")


def compile_for_task(model: tf.keras.Model, spec: DatasetSpec, learning_rate: float,
                     loss: tf.keras.losses.Loss | None = None, steps_per_execution: int = 1) -> tf.keras.Model:
    """Compiles with the task's loss and metrics after checking logits/loss agreement.

    `steps_per_execution` > 1 needs training data of a known size (models/in_memory.py)."""
    loss = loss or loss_for(spec)
    check_logits_agree(model, loss)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate), loss=loss,
                  metrics=metrics_for(spec), steps_per_execution=steps_per_execution)
    return model


def class_names(spec: DatasetSpec) -> list[str]:
    return list(spec.label_names or (str(i) for i in range(spec.num_classes)))


def all_classes(spec: DatasetSpec, probabilities: tf.Tensor) -> tf.Tensor:
    """[B, K] class names beside [B, K] scores, as TF Serving's classify API returns them."""
    return tf.tile(tf.constant([class_names(spec)]), [tf.shape(probabilities)[0], 1])


def prediction_outputs(spec: DatasetSpec, model_output: tf.Tensor, threshold: float = 0.5) -> dict[str, tf.Tensor]:
    """The served outputs, identical whichever trainer mode produced the model.

    classification: `probabilities` [B, K], `class_ids` [B], `classes` [B] (names),
    binary adds `probability` [B] (positive class), whose class is 1 from `threshold`
    up (the operating point chosen on validation, models/operating_point.py);
    regression: `predictions` [B].
    """
    if spec.task == "regression":
        return {"predictions": tf.reshape(model_output, [-1])}
    if spec.task == "binary_classification":
        positive = tf.reshape(model_output, [-1])
        probabilities = tf.stack([1.0 - positive, positive], axis=1)
    else:
        probabilities = model_output
    if spec.task == "binary_classification":
        class_ids = tf.cast(positive >= threshold, tf.int64)
    else:
        class_ids = tf.argmax(probabilities, axis=1)
    outputs = {"probabilities": probabilities, "class_ids": class_ids,
               "classes": tf.gather(tf.constant(class_names(spec)), class_ids)}
    if spec.task == "binary_classification":
        outputs["probability"] = positive
    return outputs


def eval_prediction_key(spec: DatasetSpec) -> str:
    """The output TFMA scores: positive-class probability, class probabilities, or the value."""
    return {"binary_classification": "probability", "multiclass_classification": "probabilities",
            "regression": "predictions"}[spec.task]
