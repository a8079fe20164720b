"""Images at scale: disk use and wall time per 1,000 images of the image data path, before and after.

Runs the project's own TfdsExampleGen -> ImportSchemaGen -> Transform (its
`preprocessing_fn`) with LocalDagRunner, then one pass of the Trainer's input
pipeline (`models.keras_trainer.make_dataset`) over the transformed train split,
down to model-ready float batches. Model compute is left out: it is the same
before and after. "before" is the code that materialised float32 pixels in the
Transform; measure it from a copy of that commit with --code:

    git archive 2b10081 | tar -x -C /tmp/before
    python -m bench.images_at_scale --label before --code /tmp/before
    python -m bench.images_at_scale --label after

Data: `tfds.testing.mock_data` cats_vs_dogs (TFDS's random images with the real
features, about 40x40 pixels, PNG-encoded; no download here) resized to
--image-size for VGG16, or the real scikit-learn digits (--dataset digits_images).
Results are merged into bench/results/images_at_scale.json under the label.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import pathlib
import shutil
import sys
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "images_at_scale.json"


def directory_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def count_records(files: list[str]) -> int:
    import tensorflow as tf
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def output_dir(root: pathlib.Path, component: str, key: str) -> pathlib.Path:
    return max((root / component / key).iterdir(), key=lambda p: int(p.name))


def run(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(args.code))  # the code under test: this repo, or a copy of the "before" commit
    import tensorflow as tf
    import tensorflow_datasets as tfds
    import tensorflow_transform as tft
    from tfx.components import Transform
    from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
    from tfx.components.trainer.fn_args_utils import DataAccessor
    from tfx.components.util import tfxio_utils
    from tfx.orchestration import metadata
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import Pipeline
    from tfx.types import standard_artifacts

    from models import keras_trainer
    from pipeline import pipeline_def
    from pipeline.config import PipelineConfig
    from specs.dataset import load_spec
    assert pathlib.Path(pipeline_def.__file__).is_relative_to(args.code), "imported the wrong code"

    spec = load_spec(args.dataset)
    hparams = {**spec.model, "builder": args.builder, "image_size": list(args.image_size)}
    home = args.work / args.label
    shutil.rmtree(home, ignore_errors=True)
    config = PipelineConfig(home=home, serving_dir=home / "serving", hparams=hparams)
    example_gen = pipeline_def.make_example_gen(spec, config)
    schema = ImportSchemaGen(schema_file=config.schema_for(spec))
    transform_config = pipeline_def.user_code_config(spec, "models.preprocessing")
    if hasattr(pipeline_def, "transform_hparams"):  # the "before" code decoded to the backbone's size here
        transform_config["hparams"] = pipeline_def.transform_hparams(spec, hparams)
    transform = Transform(examples=example_gen.outputs["examples"], schema=schema.outputs["schema"],
                          preprocessing_fn="models.preprocessing.preprocessing_fn", custom_config=transform_config)
    root = home / "pipeline_root"
    pipeline = Pipeline(pipeline_name=f"images_{args.label}", pipeline_root=str(root),
                        components=[example_gen, schema, transform], enable_cache=False,
                        metadata_connection_config=metadata.sqlite_metadata_connection_config(str(home / "m.sqlite")),
                        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    started = time.monotonic()
    if args.dataset == "cats_vs_dogs":
        with tfds.testing.mock_data(num_examples=args.images):
            LocalDagRunner().run(pipeline)
    else:
        LocalDagRunner().run(pipeline)
    pipeline_seconds = time.monotonic() - started

    examples_dir = output_dir(root, example_gen.id, "examples")
    transformed_dir = output_dir(root, "Transform", "transformed_examples")
    ingested = count_records([str(f) for f in examples_dir.rglob("*.gz")])
    train_files = [str(f) for f in (transformed_dir / "Split-train").glob("*.gz")]
    transformed = count_records([str(f) for f in transformed_dir.rglob("*.gz")])
    encoded = [len(e.features.feature[spec.image_feature].bytes_list.value[0])
               for e in map(tf.train.Example.FromString,
                            (r.numpy() for r in tf.data.TFRecordDataset(
                                [str(f) for f in examples_dir.rglob("*.gz")], compression_type="GZIP")))]

    # One pass of the Trainer's input pipeline over the train split, to model-ready batches.
    artifact = standard_artifacts.Examples()
    artifact.uri, artifact.split_names = str(transformed_dir), '["train"]'
    accessor = DataAccessor(tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([artifact], []),
                            record_batch_factory=None, data_view_decode_fn=None)
    tft_output = tft.TFTransformOutput(str(output_dir(root, "Transform", "transform_graph")))
    kwargs = {}
    if "image_options" in inspect.signature(keras_trainer.make_dataset).parameters:
        from models.images import ImageOptions
        kwargs["image_options"] = ImageOptions.from_model(hparams)
    dataset = keras_trainer.make_dataset(train_files, accessor, tft_output, spec, 32, 42, shuffle=False, **kwargs)
    started, train_images, shape = time.monotonic(), 0, None
    for features, _ in dataset:
        train_images += int(features[spec.image_feature].shape[0])
        shape = tuple(features[spec.image_feature].shape[1:])
    input_seconds = time.monotonic() - started

    per_1000 = lambda value, n: round(value * 1000 / n, 3)  # noqa: E731
    example_bytes, transformed_bytes = directory_bytes(examples_dir), directory_bytes(transformed_dir)
    return {
        "label": args.label, "code": str(args.code), "dataset": args.dataset,
        "data": "tfds.testing.mock_data (random images)" if args.dataset == "cats_vs_dogs" else "real",
        "builder": args.builder, "image_size": list(args.image_size), "model_input_shape": list(shape),
        "images_ingested": ingested, "images_transformed": transformed, "train_images_read": train_images,
        "mean_encoded_image_bytes": round(sum(encoded) / len(encoded), 1),
        "example_gen_mb_per_1000": per_1000(example_bytes / 1e6, ingested),
        "transform_output_mb_per_1000": per_1000(transformed_bytes / 1e6, transformed),
        "pipeline_root_mb": round(directory_bytes(root) / 1e6, 2),
        "pipeline_seconds_per_1000": per_1000(pipeline_seconds, ingested),
        "trainer_input_pass_seconds_per_1000": per_1000(input_seconds, train_images),
        "cpus": os.cpu_count(),
    }


def parse_size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", required=True, help="before | after (key in the results file)")
    parser.add_argument("--code", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent.parent,
                        help="project code to measure (default: this repo)")
    parser.add_argument("--dataset", default="cats_vs_dogs", choices=["cats_vs_dogs", "digits_images"])
    parser.add_argument("--builder", default="vgg16")
    parser.add_argument("--image-size", type=parse_size, default=(160, 160))
    parser.add_argument("--images", type=int, default=1000, help="mock examples per TFDS split read")
    parser.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/images_at_scale"))
    parser.add_argument("--output", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    args.code = args.code.resolve()
    os.chdir(args.code)
    result = run(args)
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[f"{args.dataset}/{args.label}"] = result
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
