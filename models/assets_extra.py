"""What a pushed model carries for people, beside its graph: the curated schema and class names.

Written to `<SavedModel>/assets.extra/`, which TF Serving copies with the model
and otherwise ignores (it reads only `tf_serving_warmup_requests` there). The
web console (serving/console.py) turns the schema's domains into drop-downs and
ranges and the label names into the bars of its chart, for any served version,
without access to the pipeline that trained it.
"""
from __future__ import annotations

import logging
import os

import tensorflow as tf
import tensorflow_transform as tft
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from models import heads
from specs.dataset import DatasetSpec

log = logging.getLogger(__name__)

ASSETS_EXTRA = "assets.extra"
SCHEMA_FILE = "schema.pbtxt"
LABEL_NAMES_FILE = "label_names.txt"


def write_assets_extra(export_dir: str, spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput) -> None:
    """Write the schema Transform read (the curated one) and the class names into the export."""
    directory = os.path.join(export_dir, ASSETS_EXTRA)
    tf.io.gfile.makedirs(directory)
    schema = _served_schema(spec, tf_transform_output)
    if schema is not None:
        with tf.io.gfile.GFile(os.path.join(directory, SCHEMA_FILE), "w") as handle:
            handle.write(text_format.MessageToString(schema))
    if spec.is_classification:
        with tf.io.gfile.GFile(os.path.join(directory, LABEL_NAMES_FILE), "w") as handle:
            handle.write("".join(f"{name}\n" for name in heads.class_names(spec)))


def _served_schema(spec: DatasetSpec, tf_transform_output: tft.TFTransformOutput) -> schema_pb2.Schema | None:
    """The raw schema, with the image feature marked by an (empty) image_domain so readers know it."""
    try:
        schema = schema_pb2.Schema()
        schema.CopyFrom(tf_transform_output.raw_metadata.schema)
    except (OSError, tf.errors.NotFoundError) as error:  # tf.Transform does not promise raw metadata
        log.warning("no raw schema in the Transform output, the export carries none: %s", error)
        return None
    for feature in schema.feature:
        if feature.name == spec.image_feature and feature.WhichOneof("domain_info") is None:
            feature.image_domain.SetInParent()
    return schema
