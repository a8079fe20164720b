"""`compare` command: train candidate models in one pipeline, push the best on validation, table on test."""
from __future__ import annotations

import argparse

from pipeline import exit_codes
from pipeline.run_args import add_run_args, config_from_args
from specs.dataset import load_spec
from specs.errors import UsageError


def builder_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least two builders, e.g. vgg16,resnet50")
    return names


def cmd_compare(args: argparse.Namespace) -> int:
    from pipeline.compare import run_compare
    if getattr(args, "tune", False):
        raise UsageError("compare does not run the Tuner; tune with `run --tune`, then list the result as a candidate")
    if args.builder or args.trainer:
        raise UsageError("compare takes candidates from the spec's `candidates:` or --builders; "
                         "--builder/--trainer would override every candidate (set them per candidate instead)")
    config = config_from_args(args)
    if args.weights:
        config.hparams["weights"] = args.weights
    report, table = run_compare(load_spec(args.dataset), config, args.builders, args.metric)
    print(report.summary())
    if table:
        print("\nCandidates (comparison table artefact of this run):\n" + table)
    return exit_codes.NOT_BLESSED if report.blessed is False else exit_codes.DONE  # as `run`: winner not pushed


def register(sub: argparse._SubParsersAction) -> None:
    compare = sub.add_parser(
        "compare", help="train candidate models side by side; push the best on validation",
        description="One ExampleGen/Transform, a Trainer per candidate, the winner chosen on the validation "
                    "split, gated by the Evaluator on the test split and pushed alone; prints the comparison "
                    "table (every candidate's test metric from one TFMA run with TFMA's bootstrap interval, "
                    "parameters, train time, latency, size). "
                    "Run options (--epochs, --image-size, ...) apply to every candidate.")
    add_run_args(compare)
    compare.add_argument("--builders", type=builder_list, metavar="A,B,...",
                         help="one candidate per builder, e.g. vgg16,resnet50,mobilenet_v2,efficientnet_b0,"
                              "densenet121,nasnet_mobile (default: the spec's candidates)")
    compare.add_argument("--metric", help="metric that chooses (default: the spec's no_regression_metric)")
    compare.add_argument("--weights", metavar="imagenet|none|FILE",
                         help="ImageNet backbone weights for every candidate (none: random, offline)")
    compare.set_defaults(func=cmd_compare)
