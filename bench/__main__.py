"""`make bench`: full-data pipeline runs (fresh + cached), then REST serving on the pushed churn model.

`python -m bench --penguin` runs instead the comparison with TFX's penguin example
(bench/penguin_compare.py, results in bench/results/pipeline_vs_penguin.json).
"""
import argparse
import subprocess
import sys

from bench.pipelines import WORK, main as bench_pipelines
from specs.dataset import available_datasets

parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
parser.add_argument("--penguin", action="store_true",
                    help="only the churn vs TFX penguin example comparison (first run, re-run, start-up)")
parser.add_argument("--note", help="with --penguin: what else the machine was doing (kept in the results)")
args = parser.parse_args()
if args.penguin:
    from bench.penguin_compare import main as penguin_compare
    sys.exit(penguin_compare(["--note", args.note] if args.note else []))

PIPELINES = [name for name in ("churn", "wine_white", "digits") if name in available_datasets()]

bench_pipelines([arg for name in PIPELINES for arg in ("--dataset", name)])
sys.exit(subprocess.call([sys.executable, "bench/serving_bench.py", "--model-name", "churn",
                          "--model-base-path", str(WORK / "churn" / "serving" / "churn")]))
