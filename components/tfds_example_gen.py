"""TfdsExampleGen: any TensorFlow Datasets data set as tf.Examples, through Beam.

Each output split (train, validation, test) reads one TFDS split expression, e.g.
fashion_mnist `train[:90%]` / `train[90%:]` / `test`, or `train[:70%]` / `train[70%:80%]` /
`train[80%:]` for cats_vs_dogs, which has only `train`. Images are written as their stored encoded bytes (PNG or JPEG, read with
`SkipDecoding`, so nothing is re-encoded or lost) and the Transform graph decodes
them; labels as int64. The data set is prepared once per split before the Beam
graph runs (`data_dir` may hold pre-downloaded data; without it and without
internet the run stops with a TfdsSourceError saying so). Each split is read by
one worker (`as_dataset`, the format TFDS prepares by default), then spread.
Under `tfds.testing.mock_data` the reads return TFDS's fake examples (the tests
run the executor in-process with DirectRunner in_memory, where the patch applies).
"""
from __future__ import annotations

import importlib
import logging
import time
from typing import Any, Iterable, Mapping

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.example_gen.component import QueryBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from components.example_gen_options import pack_options, unpack_options
from specs.dataset import SPLITS


progress = logging.getLogger("progress.tfds")  # shown on the console without --verbose
PROGRESS_EVERY = 10_000  # examples between progress lines while a split is read


class TfdsSourceError(ValueError):
    """The TFDS data set, its splits or its features do not match the spec."""


def load_builder(options: Mapping[str, Any]):
    """The TFDS builder named by the options; imports `module` first (project-defined data sets)."""
    import tensorflow_datasets as tfds  # heavy; only where a TFDS source is used
    if options.get("module"):
        importlib.import_module(options["module"])
    name = options["name"] + (f":{options['version']}" if options.get("version") else "")
    try:
        return tfds.builder(name, data_dir=options.get("data_dir") or None)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise TfdsSourceError(f"TFDS has no data set {name!r} ({e}); check source.name/version in the spec") from e


def check_label_names(builder, label_key: str, expected: list[str]) -> None:
    """The spec's label_names are what the served model answers: they must be TFDS's class names."""
    names = list(getattr(builder.info.features[label_key], "names", []) or [])
    if expected and names and names != expected:
        raise TfdsSourceError(f"{builder.name}: spec label_names {expected} differ from the TFDS class names "
                              f"{names}; copy the TFDS names into the spec")


def to_feature(value: Any) -> tf.train.Feature:
    value = np.asarray(value)
    if value.dtype.kind in "SO":
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes(v) for v in value.reshape(-1)]))
    if value.dtype.kind in "iub":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=value.reshape(-1).astype(np.int64)))
    if value.dtype.kind == "f":
        return tf.train.Feature(float_list=tf.train.FloatList(value=value.reshape(-1)))
    raise TfdsSourceError(f"cannot write a TFDS value of dtype {value.dtype} to a tf.Example")


class _ReadSplit(beam.DoFn):
    """Reads one TFDS split expression and yields tf.Examples with the selected features."""

    def __init__(self, options: Mapping[str, Any]):
        self._options = dict(options)

    def process(self, split: str) -> Iterable[tf.train.Example]:
        import tensorflow_datasets as tfds
        features = self._options["features"]  # output feature name -> TFDS feature key
        builder = load_builder(self._options)
        image_keys = [key for key in features.values()
                      if isinstance(builder.info.features[key], tfds.features.Image)]
        dataset = builder.as_dataset(split=split, shuffle_files=False,
                                     decoders={key: tfds.decode.SkipDecoding() for key in image_keys})
        count = 0
        for count, record in enumerate(dataset.as_numpy_iterator(), start=1):
            yield tf.train.Example(features=tf.train.Features(
                feature={name: to_feature(record[key]) for name, key in features.items()}))
            if count % PROGRESS_EVERY == 0:
                progress.info("TFDS %s[%s]: %d examples read", builder.name, split, count)
        progress.info("TFDS %s[%s]: %d examples read, done", builder.name, split, count)


def prepare(options: Mapping[str, Any]) -> None:
    """Downloads/generates the data set once, before the Beam graph runs, and checks the spec against it."""
    builder = load_builder(options)
    if not builder.is_prepared():  # the download and conversion take minutes; a prepared data set is reused
        progress.info("TFDS %s: preparing in %s (download and conversion, once)", builder.name, builder.data_dir)
    started = time.monotonic()
    try:
        builder.download_and_prepare()
    except Exception as e:  # TFDS raises download, checksum and file errors of many types
        raise TfdsSourceError(
            f"TFDS data set {builder.name} is not in data_dir {builder.data_dir_root} and could not be prepared "
            f"({type(e).__name__}: {e}); without internet, fill a data_dir on a connected machine and pass "
            "--data-dir (see docs/images.md)") from e
    features = options["features"]
    missing = sorted(set(features.values()) - set(builder.info.features.keys()))
    if missing:
        raise TfdsSourceError(f"{builder.name} has no features {missing}; it has {sorted(builder.info.features)}")
    check_label_names(builder, features[options["label_feature"]], options.get("label_names", []))
    progress.info("TFDS %s ready in %.0f s: %s", builder.name, time.monotonic() - started,
                  ", ".join(f"{name} {split.num_examples} examples" for name, split in builder.info.splits.items()))


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def _TfdsToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any],
                   split_pattern: str) -> beam.pvalue.PCollection:
    options = unpack_options(exec_properties)
    prepare(options)
    return (pipeline
            | "Split" >> beam.Create([split_pattern])
            | "Read" >> beam.ParDo(_ReadSplit(options))
            | "Spread" >> beam.Reshuffle())


class Executor(BaseExampleGenExecutor):
    """Beam executor: one TFDS split expression per output split."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _TfdsToExample


def TfdsExampleGen(name: str, splits: Mapping[str, str], features: Mapping[str, str], label_feature: str, *,
                   version: str | None = None, data_dir: str | None = None, module: str | None = None,
                   label_names: Iterable[str] = ()) -> QueryBasedExampleGen:
    """ExampleGen over TFDS data set `name`.

    splits: output split -> TFDS split expression, e.g.
        {"train": "train[:70%]", "validation": "train[70%:80%]", "test": "train[80%:]"};
    features: output feature name -> TFDS feature key, e.g. {"image": "image", "label": "label"};
    label_feature: the output name of the label (its TFDS class names are checked against label_names);
    module: a module to import that registers a project-defined TFDS builder.
    """
    if set(splits) != set(SPLITS):
        raise TfdsSourceError(f"source.splits must map exactly {', '.join(SPLITS)} to TFDS split expressions, "
                              f"got {dict(splits)}")
    options = {"name": name, "version": version or "", "data_dir": data_dir or "", "module": module or "",
               "features": dict(features), "label_feature": label_feature, "label_names": list(label_names)}
    return QueryBasedExampleGen(
        input_config=example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name=output, pattern=splits[output]) for output in SPLITS]),
        output_config=example_gen_pb2.Output(),
        custom_config=pack_options(options, __name__),
        custom_executor_spec=executor_spec.BeamExecutorSpec(Executor)).with_id("TfdsExampleGen")
