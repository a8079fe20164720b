"""Beam's in-process fixed costs are removed without changing what Beam computes.

pipeline/in_process.py sizes Beam's cache without walking every module, asks each DoFn for
its state and timer specs once and each function for its arguments once, samples bundle
states at most 20 ms apart, and pickles with cloudpickle when every pickle stays in this
process. These tests hold each against Beam itself: the same sizes, specs, arguments and
state timings, Beam pipelines (stateful, combining, our own preprocessing under tf.Transform)
that compute the same, and the pickler Beam really uses during a TFX run. How much time they save is measured by `python -m bench.in_process`.
"""
from __future__ import annotations

import base64
import bz2
import functools
import gc
import importlib
import json
import logging
import pathlib
import re
import sys
import time

import apache_beam as beam
import cloudpickle
import numpy as np
import objsize
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from apache_beam.coders import VarIntCoder
from apache_beam.internal import cloudpickle_pickler, dill_pickler, pickler
from apache_beam.runners.worker import statecache, statesampler
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core, userstate
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer
from apache_beam.utils.counters import CounterFactory, CounterName
from cloudpickle import cloudpickle_fast
from tensorflow_transform.tf_metadata import schema_utils
from tfx.orchestration import metadata
from tfx.orchestration.pipeline import Pipeline

from models.preprocessing import preprocessing_fn
from pipeline import in_process
from specs.dataset import PROJECT_ROOT
from tests.pickler_probe_component import RecordBeamsPickler

COUNT = BagStateSpec("count", VarIntCoder())
FLUSH = TimerSpec("flush", userstate.TimeDomain.WATERMARK)


class CountPerKey(beam.DoFn):
    """A stateful DoFn: Beam finds its specs in `process`'s and the timer callback's defaults."""

    def process(self, element, count=beam.DoFn.StateParam(COUNT), flush=beam.DoFn.TimerParam(FLUSH),
                key=beam.DoFn.KeyParam):
        count.add(1)
        flush.set(0)

    @on_timer(FLUSH)
    def emit(self, key=beam.DoFn.KeyParam, count=beam.DoFn.StateParam(COUNT)):
        yield key, sum(count.read())


class Stateless(beam.DoFn):
    def process(self, element):
        yield element


class TwoStatesOneName(beam.DoFn):
    def process(self, element, a=beam.DoFn.StateParam(BagStateSpec("same", VarIntCoder())),
                b=beam.DoFn.StateParam(BagStateSpec("same", VarIntCoder()))):
        yield element


class Delegating(beam.DoFn):
    """Beam inspects every method it can reach on the instance, so this class's specs depend on
    which method an instance holds."""

    def __init__(self, helper):
        self.helper = helper

    def process(self, element):
        yield element


def beams_get_dofn_specs():
    installed = userstate.get_dofn_specs
    return installed.compute if isinstance(installed, in_process.DoFnSpecsMemo) else installed


def counting(calls: list):
    def compute(dofn):
        calls.append(dofn)
        return beams_get_dofn_specs()(dofn)
    return compute


def test_the_locked_beam_is_the_release_the_memo_was_checked_against():
    locked = re.search(r"^apache-beam==(\S+)$", (PROJECT_ROOT / "requirements.lock").read_text(), re.M).group(1)
    assert locked == beam.__version__ == in_process.CHECKED_BEAM
    assert in_process.memoize_dofn_specs()
    assert isinstance(userstate.get_dofn_specs, in_process.DoFnSpecsMemo)


def test_memoised_specs_are_beams_own():
    in_process.memoize_dofn_specs()
    beams = beams_get_dofn_specs()
    for dofn in (CountPerKey(), Stateless(), beam.Map(len).fn, Delegating(CountPerKey().process)):
        assert userstate.get_dofn_specs(dofn) == beams(dofn)
    state_specs, timer_specs = userstate.get_dofn_specs(CountPerKey())
    assert state_specs == {COUNT} and timer_specs == {FLUSH}  # the comparison above compared something


def test_each_dofn_is_inspected_once_and_by_what_it_holds():
    calls: list = []
    memo = in_process.DoFnSpecsMemo(counting(calls))
    counter = CountPerKey()
    for _ in range(5):
        assert memo(counter) == ({COUNT}, {FLUSH})
    assert calls == [counter]
    assert memo(CountPerKey())[0] == {COUNT} and len(calls) == 2  # another instance is inspected
    stateful, stateless = Delegating(CountPerKey().process), Delegating(Stateless().process)
    assert memo(stateful)[0] == {COUNT} and memo(stateless) == (set(), set())  # one class, two answers


def test_callers_get_their_own_sets_and_invalid_dofns_still_fail_every_time():
    memo = in_process.DoFnSpecsMemo(counting([]))
    counter = CountPerKey()
    memo(counter)[0].clear()
    assert memo(counter)[0] == {COUNT}
    invalid = TwoStatesOneName()
    for _ in range(2):
        with pytest.raises(ValueError, match="duplicate process method parameters"):
            memo(invalid)


def test_an_answer_goes_with_its_dofn():
    memo = in_process.DoFnSpecsMemo(beams_get_dofn_specs())
    counter = CountPerKey()
    memo(counter)
    assert memo._specs
    del counter
    gc.collect()
    assert not memo._specs


def test_a_stateful_pipeline_computes_the_same_with_the_memo():
    in_process.memoize_dofn_specs()
    with beam.Pipeline() as p:
        counts = (p | beam.Create([("a", 1), ("b", 1), ("a", 1), ("a", 1)]) | beam.ParDo(CountPerKey()))
        assert_that(counts, equal_to([("a", 3), ("b", 1)]))


TYPICAL_CACHED_VALUES = [
    [np.arange(1000, dtype=np.float32), np.zeros((10, 10))],
    {"vocabulary": [b"France", b"Spain", b"Germany"], "mean": 38.9, "var": 109.6},
    ("side input", list(range(500)), {"nested": {"deep": b"x" * 1000}}),
    CountPerKey(),  # an object whose class (and through it, module globals) Beam does not count
]


def test_sizes_are_the_same_without_the_module_walk():
    walked = objsize.traverse.ObjSizeSettings(  # Beam's sizing, with objsize's default module walk
        get_size_func=statecache._size_func, get_referents_func=statecache._get_referents_func,
        filter_func=statecache._filter_func, exclude_modules_globals=True)
    in_process.size_beam_cache_without_module_walk()
    for value in TYPICAL_CACHED_VALUES:
        assert statecache.get_deep_size(value) == walked.get_deep_size(value)
    assert len(objsize.get_exclude_set()) == 1  # only None: no module was walked
    assert len(walked.new_context().exclude_set) > 1000  # the walk it replaces


def beams_get_function_args_defaults():
    installed = core.get_function_args_defaults
    return installed.compute if isinstance(installed, in_process.FunctionArgsMemo) else installed


def with_defaults(a, b=1, *rest, c=2, **more):
    return a


def wrapping(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        return function(*args, **kwargs)
    return wrapper


class Callable:
    def __call__(self, x, y=3):
        return x


CALLABLES = [
    with_defaults, lambda x, y=5: x, CountPerKey().process, CountPerKey().emit, Stateless().process,
    CountPerKey.process, Delegating(CountPerKey().process).helper, len, functools.partial(with_defaults, 0),
    Callable(), wrapping(with_defaults), beam.DoFn.process, dict.get,
]


def test_memoised_arguments_are_beams_own():
    in_process.memoize_function_args()
    beams = beams_get_function_args_defaults()
    for f in CALLABLES:
        assert core.get_function_args_defaults(f) == beams(f), f
        assert core.get_function_args_defaults(f) == beams(f), f  # the remembered answer too
    args, defaults = core.get_function_args_defaults(CountPerKey().process)
    assert args == ["element", "count", "flush", "key"] and defaults[0] == beam.DoFn.StateParam(COUNT)


def test_each_function_is_inspected_once_bound_or_not():
    calls: list = []
    memo = in_process.FunctionArgsMemo(lambda f: calls.append(f) or beams_get_function_args_defaults()(f))
    for _ in range(3):
        memo(CountPerKey().process)  # a new instance each time: one function
    memo(CountPerKey.process)  # unbound: `self` is an argument, another answer
    assert len(calls) == 2
    assert memo(CountPerKey.process)[0][0] == "self" and memo(CountPerKey().process)[0][0] == "element"


def test_a_function_given_new_defaults_or_code_is_inspected_again():
    def f(a, b=1):
        return a
    memo = in_process.FunctionArgsMemo(beams_get_function_args_defaults())
    assert memo(f) == (["a", "b"], [1])
    f.__defaults__ = (7,)
    assert memo(f) == (["a", "b"], [7])
    f.__code__ = (lambda x, y, z=0: x).__code__
    f.__defaults__ = (0,)
    assert memo(f) == (["x", "y", "z"], [0])


def test_what_is_not_a_plain_function_is_inspected_every_time_and_answers_are_copies():
    calls: list = []
    memo = in_process.FunctionArgsMemo(lambda f: calls.append(f) or beams_get_function_args_defaults()(f))
    for f in (len, functools.partial(with_defaults, 0), Callable(), wrapping(with_defaults)):
        memo(f)
        memo(f)
    assert len(calls) == 8
    memo(with_defaults)[0].append("changed")
    assert memo(with_defaults)[0] == ["a", "b"]


def test_an_answer_goes_with_its_function():
    memo = in_process.FunctionArgsMemo(beams_get_function_args_defaults())
    f = eval("lambda x, y=1: x")  # noqa: S307 - a function nothing else holds
    memo(f)
    assert len(memo._answers) == 1
    del f
    gc.collect()
    assert len(memo._answers) == 0


@pytest.mark.parametrize("owner, name, memo_class, install, beams, what", [
    (userstate, "get_dofn_specs", in_process.DoFnSpecsMemo, in_process.memoize_dofn_specs, beams_get_dofn_specs,
     "DoFn specs are inspected each time"),
    (core, "get_function_args_defaults", in_process.FunctionArgsMemo, in_process.memoize_function_args,
     beams_get_function_args_defaults, "function arguments are inspected each time"),
], ids=["dofn_specs", "function_args"])
def test_another_beam_release_keeps_beams_own_functions_and_says_so(monkeypatch, caplog, owner, name, memo_class,
                                                                    install, beams, what):
    """The release string is the only thing changed: an upgrade the memos were not checked against."""
    monkeypatch.setattr(owner, name, beams())
    monkeypatch.setattr(beam, "__version__", "9.9.9")
    with caplog.at_level(logging.INFO, logger="pipeline.in_process"):
        assert install() is False
    assert not isinstance(getattr(owner, name), memo_class)
    assert "Beam 9.9.9" in caplog.text and what in caplog.text and "checked on 2.59.0 only" in caplog.text


def test_bundle_states_are_sampled_at_most_20_ms_apart_unless_a_period_is_given():
    assert in_process.sample_bundle_states_briefly() and in_process.sample_bundle_states_briefly()  # once
    assert statesampler.StateSampler("stage", CounterFactory()).sampling_period_ms == 20  # as Beam's callers create it
    assert statesampler.StateSampler("stage", CounterFactory(), 200).sampling_period_ms == 200
    assert statesampler.StateSampler("stage", CounterFactory(), sampling_period_ms=5).sampling_period_ms == 5


def test_the_sampled_time_is_still_attributed_to_each_state():
    """Beam's own accounting, at the shorter period: each state's msecs counter gets its time."""
    in_process.sample_bundle_states_briefly()
    factory = CounterFactory()
    sampler = statesampler.StateSampler("stage", factory)
    assert statesampler.FAST_SAMPLER  # the compiled sampler, which samples (the pure-Python one does not)
    sampler.start()
    with sampler.scoped_state("step", "process"):
        time.sleep(0.4)
        with sampler.scoped_state("step", "finish"):
            time.sleep(0.2)
    sampler.stop()
    sampler.commit_counters()
    msecs = {counter.name: counter.value() for counter in factory.get_counters()}
    process = msecs[CounterName("process-msecs", step_name="step", stage_name="stage")]
    finish = msecs[CounterName("finish-msecs", step_name="step", stage_name="stage")]
    assert 300 <= process <= 1000 and 150 <= finish <= 1000 and process > finish


def test_another_beam_release_keeps_beams_sampling_period_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(statesampler.StateSampler, "__init__", statesampler.StateSampler.__init__.__wrapped__
                        if hasattr(statesampler.StateSampler.__init__, "period_ms") else statesampler.StateSampler.__init__)
    monkeypatch.setattr(beam, "__version__", "9.9.9")
    with caplog.at_level(logging.INFO, logger="pipeline.in_process"):
        assert in_process.sample_bundle_states_briefly() is False
    assert statesampler.StateSampler("stage", CounterFactory()).sampling_period_ms == 200
    assert "sampled at Beam's own period" in caplog.text


def pickler_of_a_new_beam_pipeline(argv: list[str] | None = None):
    beam.Pipeline(argv=argv)  # Beam chooses its pickler as it creates a pipeline
    return pickler.desired_pickle_lib


def test_beam_pickles_with_cloudpickle_only_while_every_pickle_stays_in_this_process():
    assert pickler_of_a_new_beam_pipeline() is dill_pickler  # Beam 2.59's own default
    with in_process.cloudpickle_for_in_process_beam([]) as chosen:
        assert chosen == "cloudpickle" and pickler_of_a_new_beam_pipeline() is cloudpickle_pickler
        assert pickler_of_a_new_beam_pipeline(["--pickle_library=dill"]) is dill_pickler  # asked for: wins
        assert pickler_of_a_new_beam_pipeline() is cloudpickle_pickler
    assert pickler.desired_pickle_lib is dill_pickler  # restored, not only at the next pipeline
    assert pickler_of_a_new_beam_pipeline() is dill_pickler
    with in_process.cloudpickle_for_in_process_beam(["--direct_running_mode=multi_processing"]) as chosen:
        assert chosen == "dill" and pickler_of_a_new_beam_pipeline() is dill_pickler  # workers unpickle


def compressed_by(encoded: bytes) -> str:
    return {b"x": "zlib", b"B": "bz2"}[base64.b64decode(encoded)[:1]]


def test_pickles_are_compressed_quickly_only_while_every_pickle_stays_in_this_process():
    made_before = cloudpickle_pickler.dumps({"made": "before"})
    assert compressed_by(made_before) == "bz2"  # Beam's own: bz2 at level 9
    with in_process.cloudpickle_for_in_process_beam([]):
        made_during = cloudpickle_pickler.dumps({"made": "during"})
        assert compressed_by(made_during) == "zlib"
        assert cloudpickle_pickler.loads(made_before) == {"made": "before"}
    with in_process.cloudpickle_for_in_process_beam(["--direct_running_mode=multi_processing"]):
        assert compressed_by(cloudpickle_pickler.dumps({"made": "for workers"})) == "bz2"  # as Beam's workers expect
    assert compressed_by(cloudpickle_pickler.dumps({"made": "after"})) == "bz2"
    assert cloudpickle_pickler.loads(made_during) == {"made": "during"}  # and reads anywhere in the process


def test_quick_compression_keeps_every_byte_and_reads_both_kinds():
    compression = in_process.quick_compression()
    data = bytes(range(256)) * 64 + b"BZh" + b"x" * 1000  # either header inside the data changes nothing
    with compression.quick():
        quick = compression.compress(data)
    assert quick[:1] == b"x" and len(quick) < len(data)
    assert compression.decompress(quick) == data == compression.decompress(compression.compress(data))
    assert compression.compress(data)[:3] == b"BZh" and compression.compress(data) == bz2.compress(data, 9)


def test_submodule_scans_are_cloudpickles_own_and_see_new_imports(tmp_path, monkeypatch):
    package = tmp_path / "scanned_package"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "child.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "scanned_package", raising=False)
    monkeypatch.delitem(sys.modules, "scanned_package.child", raising=False)
    scanned_package = importlib.import_module("scanned_package")
    code = compile("scanned_package.child.VALUE", "the body of a function to pickle", "eval")
    cloudpickles = cloudpickle_fast._find_imported_submodules
    with in_process.submodule_scan_memo() as installed:
        memo = cloudpickle_fast._find_imported_submodules
        assert installed and isinstance(memo, in_process.SubmoduleScanMemo)
        assert memo(code, [scanned_package, np]) == memo.compute(code, [scanned_package, np]) == []
        importlib.import_module("scanned_package.child")  # now loaded: a pickled function must bring it along
        answer = memo(code, [scanned_package, np])
        assert answer == memo.compute(code, [scanned_package, np]) == [sys.modules["scanned_package.child"]]
        answer.clear()  # callers get their own list
        assert memo(code, [scanned_package, np]) == [sys.modules["scanned_package.child"]]
        calls = []
        memo.compute = lambda *args: calls.append(args) or []
        memo(code, [scanned_package, np])
        assert calls == []  # kept while no module was imported
    assert cloudpickle_fast._find_imported_submodules is cloudpickles  # restored when the block ends


def test_another_cloudpickle_release_scans_as_before_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(cloudpickle, "__version__", "9.9.9")
    with caplog.at_level(logging.INFO, logger="pipeline.in_process"), in_process.submodule_scan_memo() as installed:
        assert installed is False
        assert not isinstance(cloudpickle_fast._find_imported_submodules, in_process.SubmoduleScanMemo)
    assert "cloudpickle 9.9.9" in caplog.text and "checked on 2.2.1 only" in caplog.text


def test_another_beam_release_compresses_with_bz2_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(cloudpickle_pickler, "bz2", bz2)
    monkeypatch.setattr(beam, "__version__", "9.9.9")
    with caplog.at_level(logging.INFO, logger="pipeline.in_process"), in_process.cloudpickle_for_in_process_beam([]):
        assert compressed_by(cloudpickle_pickler.dumps({"made": "during"})) == "bz2"
    assert "bz2 at level 9" in caplog.text


class Mean(beam.CombineFn):
    def create_accumulator(self):
        return [0.0, 0]

    def add_input(self, accumulator, value):
        accumulator[0] += value  # mutates its accumulator: combiners copied by unpickling must not share one
        accumulator[1] += 1
        return accumulator

    def merge_accumulators(self, accumulators):
        total = self.create_accumulator()
        for value, count in accumulators:
            total[0] += value
            total[1] += count
        return total

    def extract_output(self, accumulator):
        return accumulator[0] / accumulator[1]


def test_lifted_and_fanned_out_combiners_compute_the_same_under_cloudpickle():
    """Beam 2.59 splits a combiner into pre-combine, merge and extract stages (and with hot-key
    fanout, more), each unpickling its own copy: cloudpickle once gave such copies one object
    (apache/beam#26209)."""
    rows = [(f"k{i % 3}", float(i)) for i in range(300)]
    expected = {key: np.mean([v for k, v in rows if k == key]) for key in ("k0", "k1", "k2")}
    with in_process.cloudpickle_for_in_process_beam([]):
        with beam.Pipeline() as p:
            assert pickler.desired_pickle_lib is cloudpickle_pickler
            data = p | beam.Create(rows)
            lifted = data | "lifted" >> beam.CombinePerKey(Mean())
            fanned = data | "fanned" >> beam.CombinePerKey(Mean()).with_hot_key_fanout(4)
            counted = data | beam.ParDo(CountPerKey())
            assert_that(lifted, equal_to(list(expected.items())), label="lifted means")
            assert_that(fanned, equal_to(list(expected.items())), label="fanned-out means")
            assert_that(counted, equal_to([("k0", 100), ("k1", 100), ("k2", 100)]), label="stateful counts")


CHURN_INTS = {"CreditScore", "Age", "Tenure", "NumOfProducts", "HasCrCard", "IsActiveMember", "Exited"}
CHURN_STRINGS = {"Geography", "Gender"}


def transformed_churn(rows: list[dict], spec: dict, temp_dir: pathlib.Path, beam_args: list[str]) -> dict:
    """Our preprocessing_fn analysed and applied by tf.Transform on Beam, in this process; the
    transformed rows come back through a file (a DoFn works on its own unpickled copy)."""
    feature_spec = {name: tf.io.FixedLenFeature([1], tf.int64 if name in CHURN_INTS else
                                                tf.string if name in CHURN_STRINGS else tf.float32)
                    for name in rows[0]}
    metadata_ = tft.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    output = temp_dir / "transformed.jsonl"
    with in_process.cloudpickle_for_in_process_beam(beam_args), tft_beam.Context(temp_dir=str(temp_dir)):
        with beam.Pipeline(argv=beam_args) as p:
            library = pickler.desired_pickle_lib
            data = p | beam.Create([{k: [v] for k, v in row.items()} for row in rows])
            (transformed, _), _ = (data, metadata_) | tft_beam.AnalyzeAndTransformDataset(
                lambda inputs: preprocessing_fn(inputs, {"spec": spec}))
            _ = (transformed | beam.Map(lambda row: json.dumps({k: np.ravel(v).tolist() for k, v in row.items()}))
                 | beam.io.WriteToText(str(output), shard_name_template=""))
    assert library is (cloudpickle_pickler if not beam_args else dill_pickler)
    collected = [json.loads(line) for line in output.read_text().splitlines()]
    return {name: np.concatenate([row[name] for row in collected]) for name in collected[0]}


def test_our_preprocessing_computes_the_same_under_cloudpickle_and_dill(churn_spec, tmp_path):
    frame = pd.read_csv(PROJECT_ROOT / "data/churn/Churn_Modelling.csv", nrows=400)
    rows = [{name: (str(value) if name in CHURN_STRINGS else int(value) if name in CHURN_INTS else float(value))
             for name, value in record.items() if name in churn_spec.feature_names or name == churn_spec.label}
            for record in frame.to_dict("records")]
    under_cloudpickle = transformed_churn(rows, churn_spec.to_dict(), tmp_path / "a", [])
    under_dill = transformed_churn(rows, churn_spec.to_dict(), tmp_path / "b", ["--pickle_library=dill"])
    assert sorted(under_cloudpickle) == sorted(under_dill) and len(under_cloudpickle["Exited"]) == 400
    for name in under_dill:
        np.testing.assert_array_equal(np.sort(under_cloudpickle[name]), np.sort(under_dill[name]), err_msg=name)
    assert abs(np.mean(under_dill["CreditScore"])) < 1e-5  # z-scored: the comparison compared something


def test_run_in_process_installs_each_and_beam_pickles_with_cloudpickle_during_the_run(tmp_path):
    objsize.default_settings.update(exclude_modules_globals=True)
    record = tmp_path / "pickler.txt"
    in_process.run_in_process(Pipeline(
        pipeline_name="record", pipeline_root=str(tmp_path / "root"),
        components=[RecordBeamsPickler(record=str(record))],
        metadata_connection_config=metadata.sqlite_metadata_connection_config(str(tmp_path / "m.sqlite"))))
    assert objsize.default_settings.exclude_modules_globals is False
    assert isinstance(userstate.get_dofn_specs, in_process.DoFnSpecsMemo)
    assert isinstance(core.get_function_args_defaults, in_process.FunctionArgsMemo)
    assert statesampler.StateSampler("stage", CounterFactory()).sampling_period_ms == 20
    library, first_bytes = record.read_text().splitlines()
    assert library == cloudpickle_pickler.__name__ and first_bytes.startswith("b'x")  # zlib, QuickCompression
    assert not isinstance(cloudpickle_fast._find_imported_submodules, in_process.SubmoduleScanMemo)  # gone
    assert pickler_of_a_new_beam_pipeline() is dill_pickler  # and Beam's default again after it
