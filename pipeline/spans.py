"""Data that arrives in spans: `{SPAN}` in a CSV spec's file pattern.

ExampleGen ingests the newest span (TFX's driver resolves `{SPAN}`); with
`source.span_window: N` the Transform, Trainer and Evaluator read the newest N
spans through TFX's SpanRangeStrategy, a rolling window; and each new span is
checked for drift against the previous one (components/span_drift.py) before
training. A scheduled run (Kubeflow `schedule`) therefore picks up a new file
such as `churn-3.csv` with no change to code or spec.
"""
from __future__ import annotations

from tfx.dsl.components.base.base_node import BaseNode
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.dsl.input_resolution.strategies.span_range_strategy import SpanRangeStrategy
from tfx.proto import range_config_pb2
from tfx.types import Channel, standard_artifacts

from components.span_drift import SpanDriftCheck
from specs.dataset import DatasetSpec
from specs.errors import SpecError

SPAN_TOKEN = "{SPAN}"


def uses_spans(spec: DatasetSpec) -> bool:
    return SPAN_TOKEN in str(spec.source.get("pattern", ""))


def span_window(spec: DatasetSpec) -> int:
    """How many of the newest spans a model trains on (source.span_window, default 1)."""
    window = spec.source.get("span_window", 1)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise SpecError(f"{spec.name}: source.span_window must be a whole number >= 1, got {window!r}")
    if window > 1 and not uses_spans(spec):
        raise SpecError(f"{spec.name}: source.span_window needs {SPAN_TOKEN} in source.pattern "
                        "(e.g. churn-{SPAN}.csv)")
    return window


def training_window(spec: DatasetSpec, example_gen: BaseNode) -> tuple[Channel, list[BaseNode]]:
    """The examples Transform, Trainer and Evaluator read, and the nodes that resolve them."""
    window = span_window(spec)
    if window == 1:
        return example_gen.outputs["examples"], []
    resolver = Resolver(
        strategy_class=SpanRangeStrategy,
        config={"range_config": range_config_pb2.RangeConfig(
            rolling_range=range_config_pb2.RollingRange(num_spans=window))},
        examples=Channel(type=standard_artifacts.Examples, producer_component_id=example_gen.id),
    ).with_id("span_window_resolver")
    resolver.add_upstream_node(example_gen)
    return resolver.outputs["examples"], [resolver]


def drift_check(spec: DatasetSpec, statistics_gen: BaseNode, schema: Channel) -> list[BaseNode]:
    """Nodes comparing the new span's statistics with the previous run's (none without spans).

    The previous statistics are resolved before this run's StatisticsGen runs, so
    they are the newest earlier ones; the check skips them when they are of the same span.
    """
    if not uses_spans(spec):
        return []
    previous = Resolver(
        strategy_class=LatestArtifactStrategy,
        statistics=Channel(type=standard_artifacts.ExampleStatistics, producer_component_id=statistics_gen.id),
    ).with_id("previous_span_statistics")
    statistics_gen.add_upstream_node(previous)
    check = SpanDriftCheck(statistics=statistics_gen.outputs["statistics"], schema=schema,
                           previous_statistics=previous.outputs["statistics"],
                           stop_on_drift=bool(spec.source.get("stop_on_drift", False)))
    return [previous, check]
