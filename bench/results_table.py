"""Writes the README's results table from bench/results/accuracy_*.json (made by `python -m bench.accuracy`).

The table sits between the START/END markers in README.md; every figure is the
mean +/- standard deviation over the artefact's seeds, on the test split, and
"gate" is the spec's threshold recorded with the measurement.

    python -m bench.results_table
"""
from __future__ import annotations

import json
import pathlib
import sys

from bench.pipelines import RESULTS

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- results-table:start -->", "<!-- results-table:end -->"
SHOWN = {"auc": "AUC", "binary_accuracy": "accuracy", "precision": "precision", "recall": "recall",
         "mean_squared_error": "MSE", "mean_absolute_error": "MAE",
         "sparse_categorical_accuracy": "accuracy"}
GATE_NAMES = {"AUC": "auc", "BinaryAccuracy": "binary_accuracy", "MeanSquaredError": "mean_squared_error",
              "SparseCategoricalAccuracy": "sparse_categorical_accuracy"}


def bound_text(bounds: dict) -> str:
    return " and ".join(f"{'>=' if key == 'lower_bound' else '<='} {value:g}" for key, value in sorted(bounds.items()))


def met(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def seeds_meeting(result: dict, metric: str, bounds: dict) -> int:
    name = GATE_NAMES[metric]
    return sum(all(met(run["metrics"][name], ">=" if key == "lower_bound" else "<=", value)
                   for key, value in bounds.items()) for run in result["runs"])


def row(result: dict) -> str:
    summary = result["summary"]
    figures = ", ".join(f"{SHOWN[name]} {summary[name]['mean']:.3f} ± {summary[name]['std']:.4f}"
                        for name in SHOWN if name in summary)
    count = int(summary["example_count"]["mean"])
    gates = "; ".join(f"{metric} {bound_text(bounds)} (met by {seeds_meeting(result, metric, bounds)} of "
                      f"{len(result['runs'])} seeds)" for metric, bounds in result["gates"].items()) or "none"
    targets = []
    for name, (op, bound) in result["targets"].items():
        value = summary[name]["mean"]
        targets.append(f"{SHOWN[name]} {op} {bound:g}: {'met' if met(value, op, bound) else 'missed'}")
    served = [r["served_class_ids_on_test"] for r in result["runs"] if "served_class_ids_on_test" in r]
    if served:
        threshold = sum(r["operating_point"]["threshold"] for r in result["runs"]) / len(result["runs"])
        figures += (f"; served class_ids (threshold {threshold:.2f}, best F1 on validation): "
                    + ", ".join(f"{k} {sum(s[k] for s in served) / len(served):.3f}" for k in ("accuracy", "precision", "recall")))
    trainer = result["trainer"] + (" + Tuner" if result["tuned"] else "")
    return (f"| {result['dataset']} | {trainer} | {figures} ({count:,} test rows, seeds "
            f"{', '.join(map(str, result['seeds']))}) | {gates} | {'; '.join(targets)} | `{result['command']}` |")


def table() -> str:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("accuracy_*.json"))]
    lines = ["| data set | trainer | test split: mean ± std over seeds | gate (spec) | benchmark target | command |",
             "|---|---|---|---|---|---|"]
    return "\n".join(lines + [row(r) for r in results])


def main() -> int:
    text = README.read_text()
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{table()}\n{END}{tail}")
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
