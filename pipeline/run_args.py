"""Command-line options shared by every command that builds the pipeline (run, schema, demo, Kubeflow)."""
from __future__ import annotations

import argparse
import pathlib

from pipeline.config import DEFAULT_BEAM_ARGS, DEFAULT_BEAM_DESCRIPTION, DEFAULT_SEED, PipelineConfig
from specs.dataset import STRATEGIES, TRAINERS, available_datasets


def parse_threshold(text: str) -> tuple[str, dict[str, float]]:
    """`AUC>=0.8` or `MeanSquaredError<=0.5` -> (metric, bounds)."""
    for op, key in ((">=", "lower_bound"), ("<=", "upper_bound")):
        if op in text:
            metric, value = text.split(op, 1)
            try:
                return metric.strip(), {key: float(value)}
            except ValueError:
                break
    raise argparse.ArgumentTypeError(f"{text!r}: expected METRIC>=VALUE or METRIC<=VALUE, e.g. AUC>=0.85")


def parse_image_size(text: str) -> list[int]:
    """`32x32` -> [32, 32] (height, width)."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHTxWIDTH, e.g. 32x32")
    return [int(p) for p in parts]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return value


def add_dataset_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, metavar="NAME",
                        help=f"data set spec in specs/datasets/ (one of: {', '.join(available_datasets())})")


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that builds the pipeline."""
    add_dataset_arg(parser)
    parser.add_argument("--data-dir", help="folder with the data set's files (default: the spec's source.base)")
    parser.add_argument("--home", type=pathlib.Path, default=PipelineConfig.home,
                        help="where pipeline artifacts and ML Metadata go (default: %(default)s)")
    parser.add_argument("--serving-dir", type=pathlib.Path, default=PipelineConfig.serving_dir,
                        help="Pusher base dir; models land in SERVING_DIR/NAME/VERSION (default: %(default)s)")
    parser.add_argument("--trainer", choices=TRAINERS, help="trainer mode (default: the spec's model.trainer)")
    parser.add_argument("--strategy", default="default", choices=STRATEGIES,
                        help="tf.distribute strategy for training (default: %(default)s)")
    parser.add_argument("--tpu", metavar="ADDRESS", help="TPU name or grpc://HOST:PORT for --strategy tpu")
    parser.add_argument("--epochs", type=positive_int, help="override the spec's model.epochs")
    parser.add_argument("--builder", help="override the spec's model.builder (e.g. mlp, cnn, vgg16)")
    parser.add_argument("--image-size", type=parse_image_size, metavar="HxW",
                        help="override the spec's model.image_size for image data sets, e.g. 32x32")
    parser.add_argument("--threshold", action="append", type=parse_threshold, default=[], metavar="METRIC>=VALUE",
                        help="override a blessing threshold, e.g. AUC>=0.8 (repeatable)")
    parser.add_argument("--tune", action="store_true",
                        help="run the Tuner (KerasTuner search over the spec's tuning block, scored on the "
                             "validation split) before the Trainer")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default: %(default)s)")
    parser.add_argument("--no-cache", action="store_true", help="re-run every component even if inputs are unchanged")
    parser.add_argument("--beam-arg", action="append", default=None, metavar="ARG",
                        help=f"Beam pipeline arg, repeatable (default: {DEFAULT_BEAM_DESCRIPTION})")


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    overrides = {"epochs": args.epochs, "builder": args.builder, "image_size": args.image_size}
    hparams = {key: value for key, value in overrides.items() if value}
    return PipelineConfig(
        home=args.home.resolve(), serving_dir=args.serving_dir.resolve(),
        input_base=str(pathlib.Path(args.data_dir).resolve()) if args.data_dir else None,
        trainer=args.trainer, hparams=hparams, thresholds=dict(args.threshold), strategy=args.strategy,
        tpu=args.tpu, beam_args=tuple(args.beam_arg) if args.beam_arg else DEFAULT_BEAM_ARGS,
        enable_cache=not args.no_cache, seed=args.seed, tune=args.tune)
