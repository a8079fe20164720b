"""`make bench`: full-data pipeline runs (fresh + cached), then REST serving on the pushed churn model."""
import subprocess
import sys

from bench.pipelines import WORK, main as bench_pipelines
from specs.dataset import available_datasets

PIPELINES = [name for name in ("churn", "wine_white", "digits") if name in available_datasets()]

bench_pipelines([arg for name in PIPELINES for arg in ("--dataset", name)])
sys.exit(subprocess.call([sys.executable, "bench/serving_bench.py", "--model-name", "churn",
                          "--model-base-path", str(WORK / "churn" / "serving" / "churn")]))
