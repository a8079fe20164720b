"""Model comparison benchmark: `pipeline compare` on a data set, its table kept in bench/results/.

    python -m bench.compare --dataset churn
    python -m bench.compare --dataset digits_images
    python -m bench.compare --dataset cats_vs_dogs --mock 60 --builders vgg16,mobilenet_v2 \\
        --weights none --image-size 32x32 --epochs 1 --threshold "BinaryAccuracy>=0"

Runs from an empty home (no cache) and writes bench/results/compare_<name>.json:
the CandidateComparison artefact (winner chosen on validation, every candidate on
test from one TFMA run with TFMA's Poisson-bootstrap interval, parameters, train
time, latency, size) plus the Evaluator's blessing of the winner and the run's
wall time. The TFMA eval result stays in the run's comparison artefact
(bench/results/work/compare_<name>/..., `evaluation/`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import shutil
import sys

from bench.pipelines import RESULTS, WORK, machine
from pipeline.config import PipelineConfig
from pipeline.progress import configure_logging
from pipeline.run_args import parse_image_size, parse_threshold
from specs.dataset import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--builders", help="comma-separated builders (default: the spec's candidates)")
    parser.add_argument("--weights", help="backbone weights for every candidate (none: random)")
    parser.add_argument("--image-size", type=parse_image_size)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--threshold", type=parse_threshold, action="append", default=[],
                        help="override a gate, e.g. BinaryAccuracy>=0 for random mock labels")
    parser.add_argument("--mock", type=int, metavar="N", help="tfds.testing.mock_data with N examples (no download)")
    args = parser.parse_args()
    configure_logging(False)
    from components.candidates import TABLE_JSON
    from pipeline.compare import run_compare

    spec = load_spec(args.dataset)
    home = WORK / f"compare_{spec.name}"
    shutil.rmtree(home, ignore_errors=True)
    overrides = {"weights": args.weights, "image_size": args.image_size, "epochs": args.epochs}
    config = PipelineConfig(home=home / "runs", serving_dir=home / "serving",
                            hparams={k: v for k, v in overrides.items() if v}, thresholds=dict(args.threshold))
    mock = contextlib.nullcontext()
    if args.mock:
        import tensorflow_datasets as tfds
        mock = tfds.testing.mock_data(num_examples=args.mock)
    with mock:
        report, table = run_compare(spec, config, args.builders.split(",") if args.builders else None)
    print(table)
    comparison = report.component("CandidateComparison").outputs["comparison"][0].uri
    result = {"dataset": spec.name, "command": " ".join(["python -m bench.compare", *sys.argv[1:]]),
              "data": f"tfds.testing.mock_data ({args.mock} examples per split read, random labels)" if args.mock
              else "real", "seconds": round(report.seconds, 1), "winner_blessed": report.blessed,
              "winner_pushed": report.pushed_path is not None, "winner_test_metrics_tfma": report.metrics,
              "comparison": json.loads((pathlib.Path(comparison) / TABLE_JSON).read_text()), "machine": machine()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"compare_{spec.name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
