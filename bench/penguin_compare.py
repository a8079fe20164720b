"""Our churn pipeline against TFX's penguin example, one after the other in one session.

Each round runs, each in a fresh process with a fresh temporary home (HOME too):
- TFX's penguin example v1.15.1 (bench/penguin_example.py: LocalDagRunner,
  --direct_running_mode=in_memory, 334 rows, 11 components incl. Tuner and BulkInferrer);
- `python -m pipeline run --dataset churn` (10,000 rows), a first run.
Rounds alternate which of the two goes first: the machine's speed drifts by phase, and a
single pair measures the phase as much as the programs. After the last round, in that round's
churn home:
- the same command again with nothing changed: the up-to-date check (pipeline/unchanged_run.py)
  answers without starting the pipeline;
- the same again with --no-shortcut: LocalDagRunner starts and finds every component CACHED.
For each run: wall time from starting the process to its exit, time until the first component
started (the runner's "running" log line, timed as it arrives), and CPU seconds. The ratio
compared with issue 9's target is the median churn wall over the median penguin wall; every
round's own ratio is kept beside it. Writes all to bench/results/pipeline_vs_penguin.json.

    python -m bench.penguin_compare [--rounds 5] [--note "what else was running"]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import re
import resource
import statistics
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


def median_run(runs: list[dict]) -> dict:
    """The run with the median wall time (the upper one of an even count): a real run, components and all."""
    return sorted(runs, key=lambda run: run["wall_s"])[len(runs) // 2]


def compare(rounds: int, note: str | None) -> dict:
    loads = {"before": os.getloadavg()}
    played = []
    with tempfile.TemporaryDirectory(prefix="penguin_compare_") as scratch:
        work = pathlib.Path(scratch)
        for round_ in range(rounds):
            order = ("penguin", "churn") if round_ % 2 == 0 else ("churn", "penguin")
            penguin_home, churn_home = work / f"penguin_home{round_}", work / f"churn_home{round_}"
            penguin_home.mkdir()
            churn_home.mkdir()
            runs = {}
            for program in order:
                print(f"round {round_ + 1}/{rounds}: {program}", flush=True)
                if program == "penguin":
                    runs["penguin"] = timed_run([sys.executable, "-m", "bench.penguin_example", "--home",
                                                 str(penguin_home)], penguin_home, PENGUIN_STARTED,
                                                work / f"penguin{round_}.log")
                else:
                    runs["churn"] = churn_run(churn_home, f"churn_first{round_}", work)
                loads[f"round{round_ + 1}_after_{program}"] = os.getloadavg()
            played.append({"order": list(order), "penguin_in_memory": runs["penguin"], "churn_first_run": runs["churn"],
                           "churn_first_over_penguin": round(runs["churn"]["wall_s"] / runs["penguin"]["wall_s"], 3)})
        print("re-runs", flush=True)
        rerun = churn_run(churn_home, "churn_rerun", work)
        through_tfx = churn_run(churn_home, "churn_rerun_no_shortcut", work, "--no-shortcut")
        loads["after_reruns"] = os.getloadavg()
    penguin_wall = statistics.median(r["penguin_in_memory"]["wall_s"] for r in played)
    first_wall = statistics.median(r["churn_first_run"]["wall_s"] for r in played)
    slowest_start = max(r["churn_first_run"]["first_component_s"] or float("inf") for r in played)
    ratios = {"churn_first_over_penguin": round(first_wall / penguin_wall, 3),
              "churn_first_over_penguin_by_round": [r["churn_first_over_penguin"] for r in played],
              "churn_rerun_over_first": round(rerun["wall_s"] / first_wall, 3),
              "churn_rerun_no_shortcut_over_first": round(through_tfx["wall_s"] / first_wall, 3)}
    met = {"churn_first_over_penguin": ratios["churn_first_over_penguin"] <= TARGETS["churn_first_over_penguin"],
           "churn_rerun_over_first": ratios["churn_rerun_over_first"] <= TARGETS["churn_rerun_over_first"],
           "first_component_s": slowest_start < TARGETS["first_component_s"]}
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": f"python -m bench.penguin_compare --rounds {rounds}", "machine": machine(),
            "python_bytecode": bytecode_state(), "load_average_1_5_15_min": loads, "note": note,
            "targets": TARGETS, "ratios": ratios, "targets_met": met,
            "medians": {"penguin_wall_s": penguin_wall, "churn_first_wall_s": first_wall,
                        "churn_first_component_s": statistics.median(
                            r["churn_first_run"]["first_component_s"] for r in played),
                        "churn_first_component_slowest_s": slowest_start},
            # The median-wall runs of each, in full: what the README's tables show.
            "penguin_in_memory": median_run([r["penguin_in_memory"] for r in played]),
            "churn_first_run": median_run([r["churn_first_run"] for r in played]),
            "churn_rerun_nothing_changed": rerun, "churn_rerun_no_shortcut": through_tfx, "rounds": played}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.penguin_compare", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5,
                        help="pairs of penguin and churn first runs, order alternating (default: %(default)s)")
    parser.add_argument("--note", help="what else the machine was doing (kept in the results)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more (each round runs both programs once)")
    result = compare(args.rounds, args.note)
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(result, indent=2) + "\n")
    penguin, first, rerun = (result[k] for k in ("penguin_in_memory", "churn_first_run", "churn_rerun_nothing_changed"))
    print(f"median runs: penguin {penguin['wall_s']} s (first component at {penguin['first_component_s']} s); "
          f"churn first run {first['wall_s']} s (first component at {first['first_component_s']} s); "
          f"re-run {rerun['wall_s']} s (first component at {rerun['first_component_s']} s)\n"
          f"ratios {result['ratios']}; targets met {result['targets_met']}\nwritten to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
