"""Runs a TFX pipeline in this process with LocalDagRunner: the one way our commands start one.

Beam's in-process runner carries fixed costs that grow with every module loaded and every
transform in a pipeline, not with the data. Seven are removed here, for the runs this process
starts, without changing what is computed (`python -m bench.in_process` measures them and
checks that the test metrics agree). Remote runners (Dataflow, Flink, Spark, Kubeflow pods)
start their own processes and are left as Beam made them.
"""
from __future__ import annotations

import bz2
import contextlib
import functools
import logging
import sys
import threading
import types
import weakref
import zlib
from typing import Any, Callable, Iterator

import apache_beam
import cloudpickle
import objsize
from apache_beam.internal import cloudpickle_pickler, pickler
from apache_beam.runners.worker import statesampler
from apache_beam.transforms import core, userstate
from cloudpickle import cloudpickle_fast
from tfx.orchestration.local.local_dag_runner import LocalDagRunner
from tfx.orchestration.pipeline import Pipeline

log = logging.getLogger(__name__)

# The Beam release whose `userstate.get_dofn_specs`, `core.get_function_args_defaults`,
# `statesampler.StateSampler` and cloudpickle pickler (its compression) the changes below were
# checked against (the lock pins it). Under another release they stay off until
# tests/test_in_process.py passes there.
CHECKED_BEAM = "2.59.0"
# The same for cloudpickle's `_find_imported_submodules` (SubmoduleScanMemo).
CHECKED_CLOUDPICKLE = "2.2.1"
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


def on_checked_release(package: str, running: str, checked: str, otherwise: str) -> bool:
    """Whether `package` is the release a change here was checked against; if not, logs what
    happens instead (`otherwise`)."""
    if running == checked:
        return True
    log.info("%s %s: %s (the change was checked on %s only)", package, running, otherwise, checked)
    return False


def on_checked_beam(otherwise: str) -> bool:
    return on_checked_release("Beam", apache_beam.__version__, CHECKED_BEAM, otherwise)


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


class QuickCompression:
    """Stands in for `bz2` in Beam's cloudpickle pickler, which compresses every pickle with bz2
    at its highest level, to keep large pipeline protos under remote runners' size limits; for
    the thousands of pickles of an in-process run that is most of the pickling time. While
    `quick` is on, pickles are compressed with zlib at level 1 instead (`python -m
    bench.in_process` counts the time and the bytes). Either kind is decompressed, told apart by
    its first byte, so a pickle made before or during a quick block reads anywhere in the
    process."""

    LEVEL = 1
    ZLIB_FIRST_BYTE = b"\x78"  # zlib's header with deflate's 32 KiB window; bz2 streams begin "BZh"

    def __init__(self) -> None:
        self._quick_blocks = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def quick(self) -> Iterator[None]:
        with self._lock:
            self._quick_blocks += 1
        try:
            yield
        finally:
            with self._lock:
                self._quick_blocks -= 1

    def compress(self, data: bytes, compresslevel: int = 9) -> bytes:
        return zlib.compress(data, self.LEVEL) if self._quick_blocks else bz2.compress(data, compresslevel)

    def decompress(self, data: bytes) -> bytes:
        return zlib.decompress(data) if data[:1] == self.ZLIB_FIRST_BYTE else bz2.decompress(data)


class SubmoduleScanMemo:
    """cloudpickle's `_find_imported_submodules`, kept while no module is imported or removed.

    For each function it pickles, cloudpickle lists the loaded submodules of the packages the
    function refers to, so that another process imports them before calling it: a scan of every
    name in `sys.modules` (thousands, with TensorFlow loaded) per package, for every function of
    every DoFn pickled. The answer depends only on the function's code, those packages and
    the names in `sys.modules`, so it is kept per (code, packages) while `sys.modules` holds as
    many modules as when it was computed (imports only add to it)."""

    def __init__(self, compute: Callable[[types.CodeType, Any], list]) -> None:
        self.compute = compute
        self._answers: dict[tuple, list] = {}
        self._modules_then = -1
        self._lock = threading.Lock()  # Beam's in-process runner executes bundles on worker threads

    def __call__(self, code: types.CodeType, top_level_dependencies: Any) -> list:
        key = (code, tuple(d for d in top_level_dependencies if isinstance(d, types.ModuleType)))
        with self._lock:
            modules_now = len(sys.modules)
            if modules_now != self._modules_then:
                self._answers.clear()
                self._modules_then = modules_now
            known = self._answers.get(key)
        if known is None:
            known = self.compute(code, top_level_dependencies)
            with self._lock:
                if len(sys.modules) == self._modules_then == modules_now:
                    self._answers[key] = known
        return list(known)  # callers get their own list, as from cloudpickle


def quick_compression() -> QuickCompression | None:
    """Installs QuickCompression in Beam's cloudpickle pickler (for good: it reads bz2 as before
    and compresses with bz2 outside quick blocks); None on another Beam release."""
    if isinstance(cloudpickle_pickler.bz2, QuickCompression):
        return cloudpickle_pickler.bz2
    if not on_checked_beam("pickles compressed with bz2 at level 9"):
        return None
    cloudpickle_pickler.bz2 = QuickCompression()
    return cloudpickle_pickler.bz2


@contextlib.contextmanager
def submodule_scan_memo() -> Iterator[bool]:
    """SubmoduleScanMemo in cloudpickle for the block, on the checked cloudpickle release; yields
    whether it is installed. The answers go when the block ends."""
    scan = cloudpickle_fast._find_imported_submodules
    if isinstance(scan, SubmoduleScanMemo) or not on_checked_release(
            "cloudpickle", cloudpickle.__version__, CHECKED_CLOUDPICKLE, "loaded modules scanned for every function"):
        yield isinstance(scan, SubmoduleScanMemo)
        return
    cloudpickle_fast._find_imported_submodules = SubmoduleScanMemo(scan)
    try:
        yield True
    finally:
        cloudpickle_fast._find_imported_submodules = scan


@contextlib.contextmanager
def cloudpickle_for_in_process_beam(beam_args: list[str]) -> Iterator[str]:
    """Beam pickles every DoFn, CombineFn and coder when it builds, converts and runs a pipeline
    (about 4,200 pickles and 5,600 unpickles in a churn run); dill, Beam 2.59's default, does so
    in Python and resets its logger's level on every call, cloudpickle (Beam's default from 2.65)
    with the C pickler. Within the block Beam's default is cloudpickle when `beam_args` is empty:
    every pickle is then unpickled in this process, so it is also compressed quickly
    (QuickCompression) and cloudpickle does not rescan the loaded modules for each function
    (SubmoduleScanMemo). Given Beam args (another runner, worker processes), the default stays
    Beam's, as those workers expect; `--pickle_library` always wins. Yields the default in force."""
    chosen = pickler.USE_CLOUDPICKLE if not beam_args else pickler.DEFAULT_PICKLE_LIB
    previous_default, previous_library = pickler.DEFAULT_PICKLE_LIB, pickler.desired_pickle_lib
    pickler.DEFAULT_PICKLE_LIB = chosen
    compression = quick_compression() if not beam_args else None
    try:
        with (compression.quick() if compression else contextlib.nullcontext()), \
                (submodule_scan_memo() if not beam_args else contextlib.nullcontext()):
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
