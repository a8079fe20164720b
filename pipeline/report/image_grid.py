"""For image data sets: held-out images with true and predicted labels, worst errors first.

The run's model (its `serving_tf_example` signature, Transform graph included)
answers raw serialized examples of the held-out split, as TFMA scored them.
"""
from __future__ import annotations

import json
import os

import numpy as np

from pipeline.report import plots
from pipeline.report.data_sections import missing
from pipeline.report.html import image, paragraph
from pipeline.report.run_data import RunData, property_value, split_names, split_uri
from specs.dataset import DatasetSpec

SAMPLE = 256   # held-out examples scored
SHOWN = 32     # images in the grid


def held_out_split(run: RunData) -> str | None:
    """The split the Evaluator scored, as recorded; else the last split of the examples."""
    evaluator = run.producer("evaluation")
    recorded = property_value(evaluator.execution, "example_splits") if evaluator and evaluator.execution else None
    names = json.loads(recorded or "null")
    if names:
        return names[0]
    examples = run.output("examples")
    return split_names(examples)[-1] if examples is not None and split_names(examples) else None


def read_examples(directory: str, limit: int) -> list[bytes]:
    import tensorflow as tf
    files = sorted(tf.io.gfile.glob(os.path.join(directory, "*.gz")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [record.numpy() for record in dataset]


def image_section(run: RunData, spec: DatasetSpec) -> str:
    import tensorflow as tf
    model, examples, split = run.output("model"), run.output("examples"), held_out_split(run)
    if model is None or examples is None or split is None:
        return missing("model to look at images with", run, "Trainer")
    records = read_examples(split_uri(examples, split), SAMPLE)
    if not records:
        return paragraph(f"The {split} split has no examples.", "muted")
    serving = tf.saved_model.load(os.path.join(model.uri, "Format-Serving"))
    outputs = serving.signatures["serving_tf_example"](examples=tf.constant(records))
    probabilities = outputs["probabilities"].numpy()
    parsed = [tf.train.Example.FromString(r) for r in records]
    truth = np.array([e.features.feature[spec.label].int64_list.value[0] for e in parsed])
    predicted = probabilities.argmax(axis=1)
    true_probability = probabilities[np.arange(len(truth)), truth]
    order = np.argsort(true_probability)[:SHOWN]  # lowest probability for the true class: worst errors first
    names = list(spec.label_names) or [str(i) for i in range(probabilities.shape[1])]
    pictures = [tf.io.decode_image(parsed[i].features.feature[spec.image_feature].bytes_list.value[0],
                                   expand_animations=False).numpy() for i in order]
    titles = [f"{names[truth[i]]} -> {names[predicted[i]]} ({probabilities[i, predicted[i]]:.2f})" for i in order]
    wrong = [bool(predicted[i] != truth[i]) for i in order]
    errors = int((predicted != truth).sum())
    return (paragraph(f"{errors} of {len(records)} {split} images misclassified by this run's model; shown: the "
                      f"{len(order)} with the lowest probability for their true class (true -> predicted).")
            + image(plots.image_grid(pictures, titles, wrong), "held-out images with predictions"))
