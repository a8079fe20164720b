"""Runs a TFX pipeline in this process with LocalDagRunner: the one way our commands start one.

Beam's in-process runner carries fixed costs that grow with every module loaded and every
transform in a pipeline, not with the data. Five are removed here, for the runs this process
starts, without changing what is computed (`python -m bench.in_process` measures them and
checks that the test metrics agree). Remote runners (Dataflow, Flink, Spark, Kubeflow pods)
start their own processes and are left as Beam made them.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
import types
import weakref
from typing import Any, Callable, Iterator

import apache_beam
import objsize
from apache_beam.internal import pickler
from apache_beam.runners.worker import statesampler
from apache_beam.transforms import core, userstate
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import Pipeline

log = logging.getLogger(__name__)

# The Beam release whose `userstate.get_dofn_specs`, `core.get_function_args_defaults` and
# `statesampler.StateSampler` the changes below were checked against (the lock pins it). Under
# another release they stay off until tests/test_in_process.py passes there.
CHECKED_BEAM = "2.59.0"
# The longest sleep of Beam's per-bundle state sampler (Beam's default: 200 ms); see below.
BUNDLE_SAMPLING_PERIOD_MS = 20


def size_beam_cache_without_module_walk() -> None:
    """Beam sizes every value it caches (side inputs, state) with objsize, whose default first
    collects the id of every loaded module's globals so that they are not counted: with
    TensorFlow, TFX and Beam loaded, thousands of modules for each of a churn run's 149 lookups.
    Beam's own filter already skips modules, functions, frames and types, the ways a cached
    value reaches a module's globals, so the sizes (and the cache's evictions) stay as they
    were. objsize documents `default_settings` as the place to change its defaults."""
    objsize.default_settings.update(exclude_modules_globals=False)


class DoFnSpecsMemo:
    """`userstate.get_dofn_specs`, computed once per DoFn instance.

    Beam asks for a DoFn's state and timer specs each time it builds, converts, visits or
    executes the transform (5,537 times for about 1,230 DoFns in a churn run), and each answer
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


class FunctionArgsMemo:
    """`core.get_function_args_defaults`, computed once per Python function.

    Beam reads the argument names and defaults of every method of every DoFn it builds, and
    every ParDo copies its DoFn and every bundle unpickles its own, so a churn run asked about
    172,000 times, for a few thousand distinct functions. The answer depends only on the
    function's code, its default values and whether it is bound (binding drops the first
    argument); it is kept per function while the function and those attributes are the ones it
    was computed from. Anything else (builtins, partials, callable objects, functions carrying
    `__wrapped__` or `__signature__`, whose signature comes from elsewhere) is inspected each
    time, as before."""

    def __init__(self, compute: Callable[[Any], tuple[list, list]]) -> None:
        self.compute = compute
        self._answers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # function -> {bound: entry}
        self._lock = threading.Lock()  # Beam's in-process runner executes bundles on worker threads

    @staticmethod
    def _plain_function(f: Any) -> tuple[types.FunctionType | None, bool]:
        function, bound = (f.__func__, True) if isinstance(f, types.MethodType) else (f, False)
        if type(function) is not types.FunctionType or hasattr(function, "__wrapped__") \
                or hasattr(function, "__signature__"):
            return None, bound
        return function, bound

    def __call__(self, f: Any) -> tuple[list, list]:
        function, bound = self._plain_function(f)
        if function is None:
            return self.compute(f)
        made_of = (function.__code__, function.__defaults__, function.__kwdefaults__)
        with self._lock:
            entry = self._answers.get(function, {}).get(bound)
        if entry is None or any(now is not then for now, then in zip(made_of, entry[0])):
            entry = (made_of, self.compute(f))
            with self._lock:
                self._answers.setdefault(function, {})[bound] = entry
        args, defaults = entry[1]
        return list(args), list(defaults)  # callers get their own lists, as from Beam


def on_checked_beam(otherwise: str) -> bool:
    """Whether the running Beam is the release the changes here were checked against; if not,
    logs what happens instead (`otherwise`)."""
    if apache_beam.__version__ == CHECKED_BEAM:
        return True
    log.info("Beam %s: %s (the change was checked on %s only)", apache_beam.__version__, otherwise, CHECKED_BEAM)
    return False


def install_memo(owner: Any, name: str, memo_class: type, otherwise: str) -> bool:
    """Replaces `owner.name` with `memo_class(owner.name)` on the checked Beam release only."""
    if isinstance(getattr(owner, name), memo_class):
        return True
    if not on_checked_beam(otherwise):
        return False
    setattr(owner, name, memo_class(getattr(owner, name)))
    return True


def memoize_dofn_specs() -> bool:
    """Installs the DoFn specs memo; returns whether it is installed."""
    return install_memo(userstate, "get_dofn_specs", DoFnSpecsMemo, "DoFn specs are inspected each time Beam asks")


def memoize_function_args() -> bool:
    """Installs the function arguments memo; returns whether it is installed."""
    return install_memo(core, "get_function_args_defaults", FunctionArgsMemo,
                        "function arguments are inspected each time Beam asks")


def sample_bundle_states_briefly() -> bool:
    """Each bundle starts a thread that samples which state (start, process, finish of which
    step) the bundle is in, sleeping 2 ms at first and 20% longer each time up to 200 ms; the
    bundle's end waits for the current sleep to finish. In a churn run, 206 bundles waited
    0.95 s in all. With at most 20 ms between samples the same time is attributed (more
    finely) and a bundle's end waits at most that long. Beam's callers give no period of their
    own; one given explicitly is kept. Returns whether the shorter period is installed."""
    sampler_init = statesampler.StateSampler.__init__
    if getattr(sampler_init, "period_ms", None) == BUNDLE_SAMPLING_PERIOD_MS:
        return True
    if not on_checked_beam("bundle states sampled at Beam's own period"):
        return False

    @functools.wraps(sampler_init)
    def init(self, prefix: str, counter_factory: Any, sampling_period_ms: int = BUNDLE_SAMPLING_PERIOD_MS) -> None:
        sampler_init(self, prefix, counter_factory, sampling_period_ms)

    init.period_ms = BUNDLE_SAMPLING_PERIOD_MS
    statesampler.StateSampler.__init__ = init
    return True


@contextlib.contextmanager
def cloudpickle_for_in_process_beam(beam_args: list[str]) -> Iterator[str]:
    """Beam pickles every DoFn, CombineFn and coder when it builds, converts and runs a pipeline
    (about 4,200 pickles and 5,600 unpickles in a churn run); dill, Beam 2.59's default, does so
    in Python and resets its logger's level on every call, cloudpickle (Beam's default from 2.65)
    with the C pickler. Within the block Beam's default is cloudpickle when `beam_args` is empty:
    every pickle is then unpickled in this process. Given Beam args (another runner, worker
    processes), the default stays Beam's, as those workers expect; `--pickle_library` always
    wins. Yields the default in force."""
    chosen = pickler.USE_CLOUDPICKLE if not beam_args else pickler.DEFAULT_PICKLE_LIB
    previous_default, previous_library = pickler.DEFAULT_PICKLE_LIB, pickler.desired_pickle_lib
    pickler.DEFAULT_PICKLE_LIB = chosen
    try:
        yield chosen
    finally:
        pickler.DEFAULT_PICKLE_LIB = previous_default
        if pickler.desired_pickle_lib is not previous_library:
            pickler.set_library(pickler.USE_DILL if previous_library is pickler.dill_pickler else pickler.USE_CLOUDPICKLE)


def beam_args_of(pipeline: Pipeline) -> list:
    """Every Beam arg the pipeline's components get: the pipeline's and their own."""
    return [arg for node in pipeline.components
            for arg in getattr(getattr(node, "executor_spec", None), "beam_pipeline_args", None) or []]


def run_in_process(pipeline: Pipeline) -> None:
    """LocalDagRunner's run, with Beam's fixed costs above removed."""
    size_beam_cache_without_module_walk()
    memoize_dofn_specs()
    memoize_function_args()
    sample_bundle_states_briefly()
    with cloudpickle_for_in_process_beam(beam_args_of(pipeline)):
        LocalDagRunner().run(pipeline)
