"""What the start and the exit of `python -m pipeline run` cost, phase by phase, in fresh processes.

Each probe is a new interpreter that imports what `run` imports before its first
component (pipeline.local_runner: TensorFlow, TFX's LocalDagRunner, Beam) and exits:
- `gc_passes`: with the garbage collector running during the imports and at exit (as `run` did
  before pipeline/process_gc.py);
- `no_gc_passes`: as `run` does now (imports_without_collection, skip_collection_at_exit);
- `no_gc_passes_compiled`: the same, with every imported module's bytecode compiled beforehand
  into a scratch PYTHONPYCACHEPREFIX (what a venv installed with compiled bytecode gives); the
  warming import is not timed.
Times: the import (measured inside the probe) and the exit (from the probe's last statement to
the process's end, measured outside). Median of --repeat runs each, interleaved. The exit after
a whole run is longer than after imports alone (the run's own objects add to it).

    python -m bench.startup_phases [--repeat 3] [--note "what else was running"]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench.penguin_compare import bytecode_state
from bench.pipelines import RESULTS, machine
from specs.dataset import PROJECT_ROOT

OUTPUT = RESULTS / "startup_phases.json"
PROBE = """
import sys, time
started = time.monotonic()
if sys.argv[1] == "gc_passes":
    import pipeline.local_runner
else:
    from pipeline.process_gc import imports_without_collection, skip_collection_at_exit
    with imports_without_collection():
        import pipeline.local_runner
imported = time.monotonic() - started
if sys.argv[1] != "gc_passes":
    skip_collection_at_exit()
print(imported, time.time(), flush=True)
"""


def probe(variant: str, env: dict[str, str]) -> tuple[float, float]:
    """(import seconds, exit seconds) of one fresh process."""
    done = subprocess.run([sys.executable, "-c", PROBE, variant.removesuffix("_compiled")], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, check=True, timeout=600)
    ended = time.time()
    imported, last_statement = map(float, done.stdout.split())
    return imported, ended - last_statement


def measure(repeat: int, note: str | None) -> dict:
    base_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="startup_pycache_") as cache:
        compiled_env = {**{k: v for k, v in base_env.items() if k != "PYTHONDONTWRITEBYTECODE"},
                        "PYTHONPYCACHEPREFIX": cache}
        envs = {"gc_passes": base_env, "no_gc_passes": base_env, "no_gc_passes_compiled": compiled_env}
        probe("no_gc_passes", compiled_env)  # writes the bytecode the compiled variant reads
        samples: dict[str, list[tuple[float, float]]] = {variant: [] for variant in envs}
        for _ in range(repeat):
            for variant, env in envs.items():
                samples[variant].append(probe(variant, env))
        loads.append(os.getloadavg())
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python -m bench.startup_phases", "machine": machine(),
            "python_bytecode": bytecode_state(), "load_average_1_5_15_min": {"before": loads[0], "after": loads[1]},
            "note": note, "repeat": repeat,
            "median_s": {variant: {"import": round(statistics.median(s[0] for s in runs), 2),
                                   "exit": round(statistics.median(s[1] for s in runs), 2)}
                         for variant, runs in samples.items()},
            "samples_s": {variant: [[round(a, 2), round(b, 2)] for a, b in runs] for variant, runs in samples.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup_phases", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant (default: %(default)s)")
    parser.add_argument("--note", help="what else the machine was doing (kept in the results)")
    args = parser.parse_args(argv)
    result = measure(args.repeat, args.note)
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(result, indent=2) + "\n")
    for variant, median in result["median_s"].items():
        print(f"{variant:<24} import {median['import']:5.1f} s   exit {median['exit']:4.1f} s")
    print(f"written to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
