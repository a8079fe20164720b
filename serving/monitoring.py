"""Prometheus metrics with TF Serving's names, served on the REST port when the config asks.

`--monitoring_config_file` is TF Serving's MonitoringConfig text proto:
`prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }`.
The metrics are the ones TF Serving keeps per model and API:
`:tensorflow:serving:request_count{model_name, status}` (every request; status is
the canonical code name) and `:tensorflow:serving:request_latency{model_name, API,
entrypoint}` (successful requests, microseconds, TF Serving's 33 buckets).
"""
from __future__ import annotations

import dataclasses

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest

from serving.errors import Code

disable_created_metrics()  # TF Serving exports no `_created` series

DEFAULT_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath
# TF Serving's Buckets::Exponential(10, 1.8, 33): 10 * 1.8^i microseconds.
LATENCY_BUCKETS = tuple(10 * 1.8 ** i for i in range(33))


@dataclasses.dataclass(frozen=True)
class PrometheusConfig:
    enable: bool = False
    path: str = DEFAULT_PATH


def _monitoring_config_class():
    """TF Serving's MonitoringConfig message (monitoring_config.proto; tensorflow-serving-api lacks it)."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="serving_monitoring_config.proto", package="tensorflow.serving", syntax="proto3")
    prometheus = file_proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    monitoring = file_proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig",
                         label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.MessageFactory(pool).GetPrototype(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


def load_monitoring_config(path: str) -> PrometheusConfig:
    """Read a MonitoringConfig text proto; raises ValueError with protobuf's wording when malformed."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        config = text_format.Parse(text, _monitoring_config_class()())
    except text_format.ParseError as error:
        raise ValueError(f"Error parsing text-format tensorflow.serving.MonitoringConfig: {error}") from error
    prometheus = config.prometheus_config
    return PrometheusConfig(prometheus.enable, prometheus.path or DEFAULT_PATH)


class Metrics:
    """Request counts and latencies, recorded by both transports."""

    def __init__(self):
        self._registry = CollectorRegistry(auto_describe=True)
        self._count = Counter(":tensorflow:serving:request_count", "The total number of requests.",
                              ["model_name", "status"], registry=self._registry)
        self._latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"], buckets=LATENCY_BUCKETS, registry=self._registry)
        # Each label set's child, looked up once: `labels()` takes a lock and builds a key per call.
        self._counts: dict[tuple[str, str], Counter] = {}
        self._latencies: dict[tuple[str, str, str], Histogram] = {}

    def record(self, model_name: str, api: str, entrypoint: str, code: Code | None, seconds: float) -> None:
        """One finished request; `code` None means OK. Latency is kept for successes, as TF Serving does."""
        key = (model_name, code.name if code else "OK")
        count = self._counts.get(key)
        if count is None:
            count = self._counts.setdefault(key, self._count.labels(*key))
        count.inc()
        if code is None:
            labels = (model_name, api, entrypoint)
            latency = self._latencies.get(labels)
            if latency is None:
                latency = self._latencies.setdefault(labels, self._latency.labels(*labels))
            latency.observe(seconds * 1e6)

    def exposition(self) -> bytes:
        """Prometheus text format; counters keep TF Serving's name (no `_total` suffix)."""
        lines = []
        for metric in self._registry.collect():
            if metric.type != "counter":
                continue
            lines.append(f"# TYPE {metric.name} counter")
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    labels = ",".join(f'{key}="{_escape(value)}"' for key, value in sorted(sample.labels.items()))
                    lines.append(f"{metric.name}{{{labels}}} {sample.value:g}")
        histograms = _Only(self._registry, "histogram")
        return ("\n".join(lines) + "\n").encode("utf-8") + generate_latest(histograms)


class PrometheusPage:
    """The page handler serving `Metrics` at the configured path (GET only)."""

    def __init__(self, metrics: Metrics, path: str = DEFAULT_PATH):
        self._metrics = metrics
        self._path = path

    def handle(self, method: str, path: str) -> tuple[int, str, bytes] | None:
        if path != self._path:
            return None
        if method != "GET":
            return 405, "text/plain", f"Method {method} not allowed on {path}".encode()
        return 200, "text/plain", self._metrics.exposition()


class _Only:
    """A registry view with one metric type, for generate_latest."""

    def __init__(self, registry: CollectorRegistry, metric_type: str):
        self._registry = registry
        self._type = metric_type

    def collect(self):
        return [metric for metric in self._registry.collect() if metric.type == self._type]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
