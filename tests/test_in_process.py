"""Beam's in-process fixed costs are removed without changing what Beam computes.

pipeline/in_process.py sizes Beam's cache without walking every module and asks each DoFn
for its state and timer specs once. These tests hold both against Beam itself: the same sizes,
the same specs (per DoFn, not per class), and a stateful Beam pipeline that still computes the
right answer. How much time they save is measured by `python -m bench.in_process`, not here.
"""
from __future__ import annotations

import gc
import logging
import re

import apache_beam as beam
import numpy as np
import objsize
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.runners.worker import statecache
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate
from apache_beam.transforms.userstate import BagStateSpec, TimerSpec, on_timer
from tfx.orchestration import metadata
from tfx.orchestration.pipeline import Pipeline

from pipeline import in_process
from specs.dataset import PROJECT_ROOT

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


def test_another_beam_release_keeps_beams_own_function_and_says_so(monkeypatch, caplog):
    """The release string is the only thing changed: an upgrade the memo was not checked against."""
    monkeypatch.setattr(userstate, "get_dofn_specs", beams_get_dofn_specs())
    monkeypatch.setattr(beam, "__version__", "9.9.9")
    with caplog.at_level(logging.INFO, logger="pipeline.in_process"):
        assert in_process.memoize_dofn_specs() is False
    assert not isinstance(userstate.get_dofn_specs, in_process.DoFnSpecsMemo)
    assert "Beam 9.9.9" in caplog.text and "checked on 2.59.0 only" in caplog.text


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


def test_run_in_process_installs_both(tmp_path):
    objsize.default_settings.update(exclude_modules_globals=True)
    in_process.run_in_process(Pipeline(
        pipeline_name="empty", pipeline_root=str(tmp_path / "root"), components=[],
        metadata_connection_config=metadata.sqlite_metadata_connection_config(str(tmp_path / "m.sqlite"))))
    assert objsize.default_settings.exclude_modules_globals is False
    assert isinstance(userstate.get_dofn_specs, in_process.DoFnSpecsMemo)
