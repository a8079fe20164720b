"""Report sections about the run and its data: components, statistics, schema and anomalies, Transform."""
from __future__ import annotations

import os

from pipeline import metadata
from pipeline.report import plots
from pipeline.report.html import esc, fmt, image, paragraph, table
from pipeline.report.run_data import RunData, property_value, split_names, split_uri
from specs.dataset import DatasetSpec

MAX_FEATURES = 80  # features with histograms; wider data (e.g. 64 pixel columns) stays readable below this


def missing(what: str, run: RunData, producer: str) -> str:
    """Why a section is empty: the producing component failed, or the run stopped before it."""
    failed = ", ".join(c.component for c in run.failed)
    reason = f"the run stopped at {failed}" if failed else "the component did not run"
    return paragraph(f"No {what} in this run: {reason} before {producer} produced it.", "muted")


def components_section(run: RunData) -> str:
    start = min((c.started for c in run.components), default=0.0)
    rows = [(c.component, c.state, "yes" if c.state == "CACHED" else "no", round(c.seconds, 1),
             metadata.execution_error(c.execution) or "") for c in run.components]
    if not rows:
        return paragraph("No component executions are recorded for this run.", "muted")
    figure = plots.timeline([(c.component, c.started - start, c.seconds, c.state) for c in run.components])
    return (table(["component", "state", "cache hit", "seconds", "error"], rows)
            + image(figure, "component timeline"))


def stopped_by(run: RunData) -> str:
    """What stopped a failed run, in words (the component and the message it failed with)."""
    if not run.failed:
        return ""
    parts = []
    for component in run.failed:
        message = metadata.execution_error(component.execution) or "no error message was recorded"
        parts.append(f"<p class=\"bad\">{esc(component.component)} failed:</p><pre>{esc(message)}</pre>")
    return '<div class="note">' + "".join(parts) + "</div>"


def load_statistics(run: RunData) -> dict:
    """Split name -> DatasetFeatureStatistics, read with TFDV's own loader."""
    import tensorflow_data_validation as tfdv
    statistics = run.output("statistics")
    if statistics is None:
        return {}
    return {split: tfdv.load_stats_binary(os.path.join(split_uri(statistics, split), "FeatureStats.pb")).datasets[0]
            for split in split_names(statistics)}


def _feature_row(feature) -> tuple:
    """(name, type, present, missing, mean, std, min, max, unique, histogram html) of one feature."""
    from tensorflow_metadata.proto.v0 import statistics_pb2
    name = "/".join(feature.path.step) or feature.name
    kind = statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)
    if feature.HasField("num_stats"):
        stats = feature.num_stats
        buckets = next((h.buckets for h in stats.histograms if h.type == h.STANDARD), [])
        figure = image(plots.bars([f"{b.low_value:.3g}" for b in buckets], [b.sample_count for b in buckets], name),
                       f"histogram of {name}") if buckets else ""
        return (name, kind, stats.common_stats.num_non_missing, stats.common_stats.num_missing, stats.mean,
                stats.std_dev, stats.min, stats.max, None, figure)
    if feature.HasField("string_stats"):
        stats = feature.string_stats
        top = list(stats.top_values)[:10]
        figure = image(plots.bars([v.value[:16] for v in top], [v.frequency for v in top], name, horizontal=True),
                       f"top values of {name}") if top and stats.unique <= 1000 else ""
        return (name, kind, stats.common_stats.num_non_missing, stats.common_stats.num_missing, None, None, None,
                None, stats.unique, figure)
    common = feature.bytes_stats.common_stats if feature.HasField("bytes_stats") else None
    return (name, kind, common.num_non_missing if common else None, common.num_missing if common else None,
            None, None, None, None, feature.bytes_stats.unique if common else None, "")


def data_section(run: RunData) -> str:
    statistics = load_statistics(run)
    if not statistics:
        return missing("statistics", run, "StatisticsGen")
    counts = table(["split", "rows"], [(split, stats.num_examples) for split, stats in statistics.items()])
    split = "train" if "train" in statistics else next(iter(statistics))
    features = list(statistics[split].features)
    rows = [_feature_row(f) for f in features[:MAX_FEATURES]]
    cells = [[esc(r[0]), esc(r[1])] + [fmt(v) for v in r[2:9]] + [r[9]] for r in rows]
    more = paragraph(f"{len(features) - MAX_FEATURES} more features are not shown.", "muted") \
        if len(features) > MAX_FEATURES else ""
    return (counts + f"<h3>Features of the {esc(split)} split (StatisticsGen)</h3>"
            + table(["feature", "type", "present", "missing", "mean", "std", "min", "max", "unique", "histogram"],
                    cells, raw=True) + more)


def _domain(feature, schema) -> str:
    if feature.HasField("int_domain"):
        return f"integers {feature.int_domain.min}..{feature.int_domain.max}"
    if feature.HasField("float_domain"):
        domain = feature.float_domain
        low = f"{domain.min:g}" if domain.HasField("min") else ""
        high = f"{domain.max:g}" if domain.HasField("max") else ""
        nan = "" if domain.disallow_nan else ", NaN allowed"
        return f"floats {low}..{high}{nan}" if low or high else f"floats{nan}"
    if feature.HasField("domain"):
        values = next((d.value for d in schema.string_domain if d.name == feature.domain), [])
        return f"{feature.domain}: {', '.join(values[:12])}{' ...' if len(values) > 12 else ''}"
    if feature.HasField("string_domain"):
        return ", ".join(feature.string_domain.value[:12])
    if feature.HasField("image_domain"):
        return "image"
    return ""


def schema_section(run: RunData) -> str:
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2
    parts = [stopped_by(run)]
    schema_artifact = run.output("schema")
    if schema_artifact is None:
        return "".join(parts) + missing("schema", run, "ImportSchemaGen")
    schema = tfdv.load_schema_text(os.path.join(schema_artifact.uri, "schema.pbtxt"))
    producer = run.producer("schema")
    source = property_value(producer.execution, "schema_file") if producer and producer.execution else None
    if source:
        parts.append(paragraph(f"Curated schema imported from {source}."))
    rows = [(f.name, schema_pb2.FeatureType.Name(f.type),
             f.presence.min_fraction if f.HasField("presence") else None, _domain(f, schema),
             ", ".join(f.not_in_environment)) for f in schema.feature]
    parts.append(table(["feature", "type", "min. presence", "domain", "not in environment"], rows))
    parts.append(anomalies_html(run))
    return "".join(parts)


def anomalies_html(run: RunData) -> str:
    """ExampleValidator's findings per split, in words."""
    from tensorflow_data_validation.utils.anomalies_util import load_anomalies_binary
    anomalies = run.output("anomalies")
    if anomalies is None:
        return missing("anomaly check", run, "ExampleValidator")
    rows = []
    for split in split_names(anomalies):
        found = load_anomalies_binary(os.path.join(split_uri(anomalies, split), "SchemaDiff.pb"))
        for feature, info in sorted(found.anomaly_info.items()):
            rows.append((split, feature, info.short_description, info.description))
        if found.HasField("dataset_anomaly_info"):
            info = found.dataset_anomaly_info
            rows.append((split, "(data set)", info.short_description, info.description))
    if not rows:
        return '<h3>Anomalies</h3><p class="ok">No anomalies: every split matches the schema.</p>'
    return ('<h3>Anomalies</h3><p class="bad">The data does not match the schema (the run stops before '
            "Transform):</p>" + table(["split", "feature", "problem", "details"], rows))


def _split_means(statistics: dict) -> dict[str, dict[str, tuple[float, float]]]:
    """Split -> feature -> (mean, variance) from StatisticsGen, to compare with what Transform used."""
    return {split: {"/".join(f.path.step): (f.num_stats.mean, f.num_stats.std_dev ** 2)
                    for f in stats.features if f.HasField("num_stats")} for split, stats in statistics.items()}


def transform_section(run: RunData, spec: DatasetSpec) -> str:
    from pipeline.report.transform_stats import analyzer_outputs
    graph = run.output("transform_graph")
    if graph is None:
        return missing("Transform output", run, "Transform")
    producer = run.producer("transform_graph")
    config = property_value(producer.execution, "splits_config") if producer and producer.execution else None
    parts = [paragraph("The statistics the Transform graph applies, in training and inside the served model, "
                       "read back from the graph; StatisticsGen's figures per split beside them show which "
                       "split they were computed on.")]
    if config:
        parts.append(f"<pre>splits_config: {esc(config)}</pre>")
    z_scores, vocabularies = analyzer_outputs(graph.uri, spec)
    if z_scores:
        by_split = _split_means(load_statistics(run))
        headers = ["feature", "mean used", "variance used"]
        for split in by_split:
            headers += [f"{split} mean", f"{split} variance"]
        rows = []
        for name, (mean, variance) in z_scores.items():
            rows.append([name, mean, variance] + [v for split in by_split
                                                  for v in by_split[split].get(name, (None, None))])
        parts.append("<h3>z-score (tft.scale_to_z_score)</h3>" + table(headers, rows))
    if vocabularies:
        parts.append("<h3>Vocabularies (tft.compute_and_apply_vocabulary)</h3>" + table(
            ["feature", "size", "entries (most frequent first)"],
            [(name, len(values), ", ".join(values[:20])) for name, values in vocabularies.items()]))
    if spec.image_feature:
        parts.append(paragraph(f"{spec.image_feature}: decoded, resized and scaled in the graph (no statistics)."))
    return "".join(parts)
