"""Model quality on the held-out test split, over 3 seeds: bench/results/accuracy_<name>.json.

For each data set: one pipeline home, runs with seeds 42, 43, 44 (`--tune` when the spec
has a tuning block: the search runs once, scored on the validation split, and is reused
by the later seeds, so the spread is the training's). Figures are the Evaluator's, on the
test split, which no choice (early stopping, tuning, operating point) has seen. For a
binary task with an operating point, the served model's class_ids are also scored on the
test split (accuracy, precision, recall at the chosen threshold).

    python -m bench.accuracy --dataset churn --dataset wine_white --dataset digits
    python -m bench.accuracy --dataset wine_white --parallel-seeds

`--parallel-seeds` runs each seed in its own process and pipeline home (each tunes
with the spec's `tuning.seed`, so each search is the same search; the artefact lists
every run's tuned values): for a slow trainer on a machine with spare cores.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

from bench.pipelines import RESULTS, WORK, machine
from pipeline.config import PipelineConfig
from pipeline.evaluation import metric_thresholds
from pipeline.progress import configure_logging
from specs.dataset import DatasetSpec, load_spec

SEEDS = (42, 43, 44)
# The benchmark targets (not gates; the gates are the spec's evaluation.thresholds).
TARGETS = {"churn": {"auc": (">=", 0.87), "binary_accuracy": (">=", 0.865)},
           "wine_white": {"mean_squared_error": ("<=", 0.45)},
           "digits": {"sparse_categorical_accuracy": (">=", 0.98)}}


def read_examples(split_dir: pathlib.Path) -> list[bytes]:
    import tensorflow as tf
    return [record.numpy() for path in sorted(split_dir.glob("*.gz"))
            for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]


def served_decisions_on_test(spec: DatasetSpec, model_dir: str, examples_uri: str) -> dict[str, float]:
    """Accuracy, precision and recall of the served `class_ids` (operating threshold) on the test split."""
    import numpy as np
    import tensorflow as tf
    serialized = read_examples(pathlib.Path(examples_uri) / "Split-test")
    labels = np.array([tf.train.Example.FromString(s).features.feature[spec.label].int64_list.value[0]
                       for s in serialized])
    model = tf.saved_model.load(model_dir)
    predicted = np.concatenate([model.signatures["serving_tf_example"](examples=tf.constant(serialized[i:i + 512]))
                                ["class_ids"].numpy() for i in range(0, len(serialized), 512)])
    positives = predicted == 1
    true_positives = float(np.sum(positives & (labels == 1)))
    return {"accuracy": float(np.mean(predicted == labels)),
            "precision": true_positives / max(float(np.sum(positives)), 1.0),
            "recall": true_positives / max(float(np.sum(labels == 1)), 1.0)}


def one_run(spec: DatasetSpec, config: PipelineConfig) -> dict:
    from pipeline.local_runner import run_local
    report = run_local(spec, config)
    run = {"seed": config.seed, "seconds": round(report.seconds, 1), "blessed": report.blessed,
           "metrics": report.metrics, "slices": report.slices}
    trainer, tuner = report.component("Trainer"), report.component("Tuner")
    run_dir = pathlib.Path(trainer.outputs["model_run"][0].uri)
    if (run_dir / "operating_point.json").exists():
        run["operating_point"] = json.loads((run_dir / "operating_point.json").read_text())
        run["served_class_ids_on_test"] = served_decisions_on_test(
            spec, str(pathlib.Path(trainer.outputs["model"][0].uri) / "Format-Serving"),
            (report.component("CsvExampleGen") or report.component("TfdsExampleGen")).outputs["examples"][0].uri)
    if tuner:
        best = pathlib.Path(tuner.outputs["best_hyperparameters"][0].uri) / "best_hyperparameters.txt"
        run["tuned"] = json.loads(best.read_text())["values"]
        run["tuner_state"] = tuner.state
    return run


def summarize(runs: list[dict]) -> dict[str, dict[str, float]]:
    names = sorted(set.intersection(*(set(r["metrics"]) for r in runs)))
    return {name: {"mean": statistics.mean(r["metrics"][name] for r in runs),
                   "std": statistics.stdev(r["metrics"][name] for r in runs) if len(runs) > 1 else 0.0}
            for name in names}


def seed_config(spec: DatasetSpec, home: pathlib.Path, seed: int) -> PipelineConfig:
    return PipelineConfig(home=home / "runs", serving_dir=home / "serving", seed=seed, tune=bool(spec.tuning))


def parallel_runs(name: str, home: pathlib.Path) -> list[dict]:
    """Each seed in its own process and home; their run records, in seed order."""
    outputs = {seed: home / f"run_{seed}.json" for seed in SEEDS}
    children = [subprocess.Popen([sys.executable, "-m", "bench.accuracy", "--dataset", name, "--one-seed", str(seed),
                                  "--output", str(path)]) for seed, path in outputs.items()]
    if any(child.wait() for child in children):
        raise RuntimeError(f"{name}: a seed's run failed; see its log above")
    return [json.loads(outputs[seed].read_text()) for seed in SEEDS]


def bench_accuracy(name: str, parallel: bool = False) -> dict:
    spec = load_spec(name)
    home = WORK / "accuracy" / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    tune = bool(spec.tuning)
    runs = parallel_runs(name, home) if parallel else [one_run(spec, seed_config(spec, home, seed)) for seed in SEEDS]
    result = {"dataset": name, "trainer": spec.default_trainer, "tuned": tune, "split": "test",
              "split_fractions": dict(spec.splits), "seeds": list(SEEDS),
              "command": f"python -m bench.accuracy --dataset {name}" + (" --parallel-seeds" if parallel else ""),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
              "gates": metric_thresholds(spec), "targets": TARGETS.get(name, {}),
              "summary": summarize(runs), "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"accuracy_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: " + ", ".join(f"{k} {v['mean']:.4f} +/- {v['std']:.4f}" for k, v in result["summary"].items()))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", action="append", required=True, help="data set name (repeatable)")
    parser.add_argument("--parallel-seeds", action="store_true", help="one process and pipeline home per seed")
    parser.add_argument("--one-seed", type=int, help=argparse.SUPPRESS)  # a --parallel-seeds child
    parser.add_argument("--output", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    configure_logging(verbose=False)
    if args.one_seed is not None:
        spec = load_spec(args.dataset[0])
        home = WORK / "accuracy" / spec.name / f"seed_{args.one_seed}"
        args.output.write_text(json.dumps(one_run(spec, seed_config(spec, home, args.one_seed)), indent=2))
        return 0
    for name in args.dataset:
        bench_accuracy(name, args.parallel_seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
