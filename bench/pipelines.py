"""Pipeline wall-time benchmark: each component and the whole run, fresh and then cached.

Runs a data set's full pipeline from an empty pipeline root (no cache), then again
with unchanged inputs (cached), and writes bench/results/pipeline_<name>.json.

    python -m bench.pipelines --dataset churn
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import sys
import time

from pipeline.config import DEFAULT_BEAM_ARGS, DEFAULT_BEAM_DESCRIPTION, PipelineConfig
from pipeline.progress import configure_logging
from specs.dataset import load_spec

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
WORK = RESULTS / "work"


def machine() -> dict:
    """Where a figure was measured (package versions read without importing them)."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": importlib.metadata.version("tensorflow"), "tfx": importlib.metadata.version("tfx"),
            "platform": platform.platform()}


def bench_pipeline(name: str, beam_args: tuple[str, ...] = DEFAULT_BEAM_ARGS) -> dict:
    from pipeline.local_runner import run_local
    spec = load_spec(name)
    home = WORK / name
    shutil.rmtree(home, ignore_errors=True)
    config = PipelineConfig(home=home / "runs", serving_dir=home / "serving", beam_args=beam_args)
    first = run_local(spec, config)
    second = run_local(spec, config)
    result = {"dataset": name, "beam_args": list(beam_args), "machine": machine(),
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": f"python -m bench.pipelines --dataset {name}",
              "first_run": first.to_dict(), "second_run_cached": second.to_dict()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"pipeline_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"{name}: first run {first.seconds:.1f} s, cached run {second.seconds:.1f} s, metrics {first.metrics}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipelines", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", action="append", required=True, help="data set name (repeatable)")
    parser.add_argument("--beam-arg", action="append", help="Beam arg (repeatable); default: "
                                                            + DEFAULT_BEAM_DESCRIPTION)
    args = parser.parse_args(argv)
    configure_logging(verbose=False)
    for name in args.dataset:
        bench_pipeline(name, tuple(args.beam_arg) if args.beam_arg else DEFAULT_BEAM_ARGS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
