"""Runs a TFX pipeline in this process with LocalDagRunner: the one way our commands start one.

Beam's in-process runner carries two fixed costs that grow with every module loaded and every
transform in a pipeline, not with the data. Both are removed here, for the runs this process
starts, without changing what is computed (`python -m bench.in_process` measures them and
checks that the test metrics agree). Remote runners (Dataflow, Flink, Spark, Kubeflow pods)
start their own processes and are left as Beam made them.
"""
from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable

import apache_beam
import objsize
from apache_beam.transforms import userstate
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import Pipeline

log = logging.getLogger(__name__)

# The Beam release whose `userstate.get_dofn_specs` the memo below was checked against (the lock
# pins it). Under another release the memo stays off until tests/test_in_process.py passes there.
CHECKED_BEAM = "2.59.0"


def size_beam_cache_without_module_walk() -> None:
    """Beam sizes every value it caches (side inputs, state) with objsize, whose default first
    collects the id of every loaded module's globals so that they are not counted: with
    TensorFlow, TFX and Beam loaded, thousands of modules for each of a churn run's 205 lookups.
    Beam's own filter already skips modules, functions, frames and types, the ways a cached
    value reaches a module's globals, so the sizes (and the cache's evictions) stay as they
    were. objsize documents `default_settings` as the place to change its defaults."""
    objsize.default_settings.update(exclude_modules_globals=False)


class DoFnSpecsMemo:
    """`userstate.get_dofn_specs`, computed once per DoFn instance.

    Beam asks for a DoFn's state and timer specs each time it builds, converts, visits or
    executes the transform (6,596 times for about 1,470 DoFns in a churn run), and each answer
    inspects the signature of every method the DoFn has. A DoFn's methods and their default
    parameters (where the specs are declared) are fixed once it exists, so its answer is too.
    Kept per instance, never per class: Beam inspects every method an instance holds, so two
    DoFns of one class can differ. An answer is dropped when its DoFn is; a DoFn that cannot be
    weakly referenced is inspected every time, as before."""

    def __init__(self, compute: Callable[[Any], tuple[set, set]]) -> None:
        self.compute = compute
        self._specs: dict[int, tuple[set, set]] = {}  # by identity: equal DoFns are still two DoFns
        self._lock = threading.Lock()  # Beam's in-process runner executes bundles on worker threads

    def _forget(self, key: int) -> None:
        with self._lock:
            self._specs.pop(key, None)

    def __call__(self, dofn: Any) -> tuple[set, set]:
        key = id(dofn)
        with self._lock:
            known = self._specs.get(key)
        if known is None:
            known = self.compute(dofn)  # raises for an invalid DoFn, every time, as Beam does
            try:
                weakref.finalize(dofn, self._forget, key)  # its id may be reused once it is gone
            except TypeError:
                return known  # not weak-referenceable: not kept
            with self._lock:
                self._specs[key] = known
        state_specs, timer_specs = known
        return set(state_specs), set(timer_specs)  # callers get their own sets, as from Beam


def memoize_dofn_specs() -> bool:
    """Installs the memo on the checked Beam release; returns whether it is installed."""
    if isinstance(userstate.get_dofn_specs, DoFnSpecsMemo):
        return True
    if apache_beam.__version__ != CHECKED_BEAM:
        log.info("Beam %s: DoFn specs are inspected each time Beam asks (the memo was checked on %s only)",
                 apache_beam.__version__, CHECKED_BEAM)
        return False
    userstate.get_dofn_specs = DoFnSpecsMemo(userstate.get_dofn_specs)
    return True


def run_in_process(pipeline: Pipeline) -> None:
    """LocalDagRunner's run, with Beam's fixed costs above removed."""
    size_beam_cache_without_module_walk()
    memoize_dofn_specs()
    LocalDagRunner().run(pipeline)
