"""What pipeline/in_process.py saves: churn's pipeline with Beam as shipped, then as we run it.

Each round runs the churn pipeline twice, each time in a fresh process with an empty home:
once with Beam as shipped (its cache sizer walks every module per lookup; every DoFn's specs
and every function's arguments are inspected each time Beam asks; dill pickles, bz2 compresses
at level 9; each bundle's end waits for a state-sampling sleep of up to 200 ms), once as
`python -m pipeline run` runs it (pipeline/in_process.py). Rounds alternate the order. For
each run: the pipeline's seconds, its components', how often each cost was paid and the
seconds it took (cloudpickle's submodule scans: those computed, not answered by the memo), the
bytes pickled, the bytes Beam's cache was told its values take, the test metrics and digests of
what ExampleGen and Transform wrote (all must agree), and the peak memory.
Writes bench/results/in_process.json.

    python -m bench.in_process [--rounds 2] [--note "what else was running"]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from bench.pipelines import RESULTS, machine
from specs.dataset import PROJECT_ROOT

OUTPUT = RESULTS / "in_process.json"
MODES = ("as_shipped", "in_process")
# Each cost counted where Beam pays it: how often ("<cost>s") and the seconds it took ("<cost>_s").
COSTS = ("dofn_inspection", "argument_inspection", "cache_sizing", "pickle", "unpickle", "submodule_scan",
         "bundle_end")
PAID = tuple(key for cost in COSTS for key in (f"{cost}s", f"{cost}_s")) + ("cache_sized_bytes", "pickled_bytes")


def where_runs_part(root: pathlib.Path) -> dict:
    """What each step handed on, to tell where two runs' results part: digests of the examples
    ExampleGen and Transform wrote, in file order (each tf.Example serialized deterministically:
    a proto map's order on the wire may change between processes), and the Trainer's epochs."""
    import tensorflow as tf
    found: dict = {}
    for step, pattern in (("examples", "CsvExampleGen/examples/*/Split-*/*.gz"),
                          ("transformed_examples", "Transform/transformed_examples/*/Split-*/*.gz")):
        digest = hashlib.sha256()
        for path in sorted(root.glob(pattern)):
            for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP").as_numpy_iterator():
                digest.update(tf.train.Example.FromString(record).SerializeToString(deterministic=True))
        found[f"{step}_sha256"] = digest.hexdigest()[:16]
    epochs = json.loads(next(root.glob("Trainer/model_run/*/training_history.json")).read_text())["epochs"]
    found["training_epochs"] = len(epochs)
    found["best_val_loss"] = min(epoch["val_loss"] for epoch in epochs)
    return found


def child(mode: str, home: pathlib.Path, output: pathlib.Path) -> None:
    """One pipeline run in this process, Beam's costs (COSTS) counted where they are paid."""
    from pipeline.process_gc import imports_without_collection, skip_collection_at_exit
    with imports_without_collection():  # as `python -m pipeline run` imports them
        from apache_beam.internal import pickler
        from apache_beam.runners.worker import statecache, statesampler
        from apache_beam.transforms import core, userstate
        from cloudpickle import cloudpickle_fast

        from pipeline import in_process
        from pipeline.config import PipelineConfig
        from pipeline.local_runner import run_local
        from pipeline.progress import configure_logging
        from specs.dataset import load_spec

    paid = {key: 0.0 if key.endswith("_s") else 0 for key in PAID}

    def counted(function, count: str, seconds: str, total: str | None = None, measure=lambda result: result):
        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            finally:
                paid[seconds] += time.perf_counter() - began
                paid[count] += 1
            if total:
                paid[total] += measure(result)
            return result
        return wrapper

    # Beam's functions, counted; a memo (when on) wraps the counted inspection, so only misses count.
    # Each inspection's time includes the argument inspections it makes.
    userstate.get_dofn_specs = counted(userstate.get_dofn_specs, "dofn_inspections", "dofn_inspection_s")
    core.get_function_args_defaults = counted(core.get_function_args_defaults, "argument_inspections",
                                              "argument_inspection_s")
    statecache.get_deep_size = counted(statecache.get_deep_size, "cache_sizings", "cache_sizing_s", "cache_sized_bytes")
    pickler.dumps = counted(pickler.dumps, "pickles", "pickle_s", "pickled_bytes", len)  # whichever library is chosen
    pickler.loads = counted(pickler.loads, "unpickles", "unpickle_s")
    cloudpickle_fast._find_imported_submodules = counted(  # cloudpickle's scan of sys.modules per function
        cloudpickle_fast._find_imported_submodules, "submodule_scans", "submodule_scan_s")
    statesampler.StateSampler.stop = counted(statesampler.StateSampler.stop, "bundle_ends", "bundle_end_s")
    if mode == "as_shipped":
        in_process.size_beam_cache_without_module_walk = lambda: None
        in_process.memoize_dofn_specs = lambda: False
        in_process.memoize_function_args = lambda: False
        in_process.sample_bundle_states_briefly = lambda: False
        in_process.cloudpickle_for_in_process_beam = contextlib.nullcontext  # Beam's own pickler (dill)
    configure_logging(verbose=False)
    report = run_local(load_spec("churn"), PipelineConfig(home=home / "runs", serving_dir=home / "serving"))
    output.write_text(json.dumps({"mode": mode, "pipeline_s": round(report.seconds, 2),
                                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                                  **{k: round(v, 2) if isinstance(v, float) else v for k, v in paid.items()},
                                  "components": {c.component: round(c.seconds, 2) for c in report.components},
                                  "test_metrics": report.metrics,
                                  "handed_on": where_runs_part(home / "runs" / "churn" / "pipeline_root")}))
    skip_collection_at_exit()  # as `python -m pipeline` exits


def run_child(mode: str, work: pathlib.Path, name: str) -> dict:
    home, output = work / name, work / f"{name}.json"
    with (work / f"{name}.log").open("w") as log:
        code = subprocess.call([sys.executable, "-m", "bench.in_process", "--child", mode, "--home", str(home),
                                "--output", str(output)], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if code:
        raise SystemExit(f"the {mode} run exited with {code}; see {work / name}.log")
    return json.loads(output.read_text())


def compare(rounds: int, note: str | None) -> dict:
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="in_process_") as scratch:
        for round_ in range(rounds):
            for mode in (MODES if round_ % 2 == 0 else MODES[::-1]):
                print(f"round {round_ + 1}/{rounds}: {mode}", flush=True)
                # Homes of one length: the paths Beam caches are then the same size in every run.
                runs[mode].append(run_child(mode, pathlib.Path(scratch), f"run{round_}{MODES.index(mode)}"))
                loads.append(os.getloadavg())
    medians = {mode: {key: round(statistics.median(r[key] for r in runs[mode]), 2)
                      for key in ("pipeline_s", "peak_rss_mb", *PAID)} for mode in MODES}
    shipped, ours = medians["as_shipped"], medians["in_process"]
    metrics = {json.dumps(r["test_metrics"], sort_keys=True) for mode in MODES for r in runs[mode]}
    return {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": f"python -m bench.in_process --rounds {rounds}", "machine": machine(), "note": note,
            "load_average_1_min": [round(load[0], 2) for load in loads],
            "medians": medians,
            "saved_s": {"pipeline": round(shipped["pipeline_s"] - ours["pipeline_s"], 2),
                        "dofn_inspection": round(shipped["dofn_inspection_s"] - ours["dofn_inspection_s"], 2),
                        "argument_inspection": round(shipped["argument_inspection_s"] - ours["argument_inspection_s"], 2),
                        "cache_sizing": round(shipped["cache_sizing_s"] - ours["cache_sizing_s"], 2),
                        "pickling": round(shipped["pickle_s"] + shipped["unpickle_s"]
                                          - ours["pickle_s"] - ours["unpickle_s"], 2),  # scans included
                        "bundle_end_wait": round(shipped["bundle_end_s"] - ours["bundle_end_s"], 2)},
            "same_test_metrics_in_every_run": len(metrics) == 1,
            "same_cache_sizes_in_every_run": len({r["cache_sized_bytes"] for mode in MODES for r in runs[mode]}) == 1,
            "same_handed_on_in_every_run": len({json.dumps(r["handed_on"], sort_keys=True)
                                                for mode in MODES for r in runs[mode]}) == 1,
            "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.in_process", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs per mode, order alternating (default: 2)")
    parser.add_argument("--note", help="what else the machine was doing (kept in the results)")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=pathlib.Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=pathlib.Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: give 1 or more (each round runs both modes once)")
    if args.child:
        child(args.child, args.home, args.output)
        return 0
    result = compare(args.rounds, args.note)
    RESULTS.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("medians", "saved_s", "same_test_metrics_in_every_run",
                                             "same_cache_sizes_in_every_run", "same_handed_on_in_every_run")},
                     indent=2))
    print(f"written to {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
