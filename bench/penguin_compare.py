"""Our churn pipeline against TFX's penguin example, one after the other in one session.

Three runs, each a fresh process with a fresh temporary home (HOME too):
1. TFX's penguin example v1.15.1 (bench/penguin_example.py: LocalDagRunner,
   --direct_running_mode=in_memory, 334 rows, 11 components incl. Tuner and BulkInferrer);
2. `python -m pipeline run --dataset churn` (10,000 rows), first run;
3. the same command again with nothing changed: the up-to-date check (pipeline/unchanged_run.py)
   answers without starting the pipeline;
4. the same again with --no-shortcut: LocalDagRunner starts and finds every component CACHED.
For each: wall time from starting the process to its exit, time until the first component
started (the runner's "running" log line, timed as it arrives), and CPU seconds. Writes them,
the ratios and issue 9's targets to bench/results/pipeline_vs_penguin.json.

    python -m bench.penguin_compare [--note "what else was running"]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import re
import resource
import subprocess
import sys
import tempfile
import time

from bench.pipelines import RESULTS, machine
from specs.dataset import PROJECT_ROOT

OUTPUT = RESULTS / "pipeline_vs_penguin.json"
# Issue 9's targets, as ratios of the walls measured here, and the start-up bound in seconds.
TARGETS = {"churn_first_over_penguin": 0.5, "churn_rerun_over_first": 0.1, "first_component_s": 10.0}
PENGUIN_STARTED = re.compile(r"Component (\S+) is running\.")               # TFX's own log line
CHURN_STARTED = re.compile(r"^\d\d:\d\d:\d\d I (\S+)\s+running$")          # pipeline/progress.py's


def bytecode_state() -> dict:
    """Whether imports read compiled bytecode or compile TF/TFX from source in every process.

    About half of the time before the first component is compiling: `uv pip sync` installs without
    .pyc files (unlike pip, unless given --compile-bytecode), and with PYTHONDONTWRITEBYTECODE set
    Python never writes them, so each start compiles some 8,000 modules again.
    """
    site = pathlib.Path(importlib.util.find_spec("tfx").submodule_search_locations[0]).parent
    probes = {"tfx": site / "tfx/orchestration/local/local_dag_runner.py", "tensorflow": site / "tensorflow/__init__.py"}
    return {"PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"), "pycache_prefix": sys.pycache_prefix,
            **{f"{name}_compiled": pathlib.Path(importlib.util.cache_from_source(str(path))).exists()
               for name, path in probes.items()}}


def timed_run(command: list[str], home: pathlib.Path, started: re.Pattern, log: pathlib.Path) -> dict:
    """Runs `command` with HOME=home; its output goes to `log`, timed line by line."""
    env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    first_component = first_name = None
    with log.open("w") as out, subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, text=True,
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        for line in process.stdout:
            out.write(line)
            match = started.search(line.rstrip())
            if match and first_component is None:
                first_component, first_name = time.monotonic() - began, match.group(1)
        code = process.wait()
    wall = time.monotonic() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code not in (0, 3):  # 3: churn finished but not blessed, still a full run
        raise SystemExit(f"{' '.join(command)} exited with {code}; see {log}")
    return {"command": " ".join(command[1:]) if command[0] == sys.executable else " ".join(command),
            "exit_code": code, "wall_s": round(wall, 1),
            "first_component_s": round(first_component, 1) if first_component is not None else None,
            "first_component": first_name,
            "cpu_s": round(cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 1)}


def churn_run(home: pathlib.Path, name: str, work: pathlib.Path, *extra: str) -> dict:
    summary = work / f"{name}.json"
    result = timed_run([sys.executable, "-m", "pipeline", "run", "--dataset", "churn", "--home", str(home / "runs"),
                        "--serving-dir", str(home / "serving"), "--report", str(summary), *extra],
                       home, CHURN_STARTED, work / f"{name}.log")
    report = json.loads(summary.read_text())
    result.update(pipeline_s=report["seconds"], blessed=report["blessed"],
                  pipeline_started=report.get("pipeline_started", True),
                  evaluation_reused=report.get("evaluation_reused"),
                  components={c["component"]: [c["state"], c["seconds"]] for c in report["components"]})
    return result


def compare(note: str | None) -> dict:
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="penguin_compare_") as scratch:
        work = pathlib.Path(scratch)
        penguin_home, churn_home = work / "penguin_home", work / "churn_home"
        penguin_home.mkdir()
        churn_home.mkdir()
        penguin = timed_run([sys.executable, "-m", "bench.penguin_example", "--home", str(penguin_home)],
                            penguin_home, PENGUIN_STARTED, work / "penguin.log")
        loads.append(os.getloadavg())
        first = churn_run(churn_home, "churn_first", work)
        loads.append(os.getloadavg())
        rerun = churn_run(churn_home, "churn_rerun", work)
        loads.append(os.getloadavg())
        through_tfx = churn_run(churn_home, "churn_rerun_no_shortcut", work, "--no-shortcut")
        loads.append(os.getloadavg())
    ratios = {"churn_first_over_penguin": round(first["wall_s"] / penguin["wall_s"], 3),
              "churn_rerun_over_first": round(rerun["wall_s"] / first["wall_s"], 3),
              "churn_rerun_no_shortcut_over_first": round(through_tfx["wall_s"] / first["wall_s"], 3)}
    met = {"churn_first_over_penguin": ratios["churn_first_over_penguin"] <= TARGETS["churn_first_over_penguin"],
           "churn_rerun_over_first": ratios["churn_rerun_over_first"] <= TARGETS["churn_rerun_over_first"],
           "first_component_s": (first["first_component_s"] or float("inf")) < TARGETS["first_component_s"]}
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": "python -m bench.penguin_compare", "machine": machine(), "python_bytecode": bytecode_state(),
            "load_average_1_5_15_min": {"before": loads[0], "after_penguin": loads[1], "after_first": loads[2],
                                        "after_rerun": loads[3], "after_rerun_no_shortcut": loads[4]},
            "note": note, "targets": TARGETS, "ratios": ratios, "targets_met": met,
            "penguin_in_memory": penguin, "churn_first_run": first, "churn_rerun_nothing_changed": rerun,
            "churn_rerun_no_shortcut": through_tfx}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.penguin_compare", description=__doc__.split("\n")[0])
    parser.add_argument("--note", help="what else the machine was doing (kept in the results)")
    args = parser.parse_args(argv)
    result = compare(args.note)
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(result, indent=2) + "\n")
    penguin, first, rerun = (result[k] for k in ("penguin_in_memory", "churn_first_run", "churn_rerun_nothing_changed"))
    print(f"penguin {penguin['wall_s']} s (first component at {penguin['first_component_s']} s); "
          f"churn first run {first['wall_s']} s (first component at {first['first_component_s']} s); "
          f"re-run {rerun['wall_s']} s (first component at {rerun['first_component_s']} s)\n"
          f"ratios {result['ratios']}; targets met {result['targets_met']}\nwritten to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
