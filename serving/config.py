"""Which models to serve: `--model_name/--model_base_path` or a ModelServerConfig file.

The config file is TF Serving's own text format, so the same file drives this
server and the real `tensorflow_model_server` in deploy/.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping

from google.protobuf import text_format


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's ServableVersionPolicy: latest N, all, or specific versions."""

    kind: str = "latest"  # "latest" | "all" | "specific"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def select(self, available: Iterable[int]) -> set[int]:
        """Versions to serve out of the loadable ones on disk."""
        ordered = sorted(set(available), reverse=True)
        if self.kind == "all":
            return set(ordered)
        if self.kind == "specific":
            return self.versions.intersection(ordered)
        return set(ordered[: self.num_versions])

    def describe(self) -> str:
        if self.kind == "specific":
            return f"specific {sorted(self.versions)}"
        if self.kind == "latest":
            return f"latest {self.num_versions}"
        return "all"


@dataclasses.dataclass(frozen=True)
class RequestLogging:
    """TF Serving's LoggingConfig: log this share of requests to files starting with this prefix."""

    sampling_rate: float
    filename_prefix: str


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One served model: where its versions live, which to serve, version labels, request logging."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)
    logging: RequestLogging | None = None


def single_model(name: str, base_path: str) -> list[ModelEntry]:
    """The `--model_name/--model_base_path` form: one model, latest version."""
    return [ModelEntry(name=name, base_path=base_path)]


def parse_model_config(text: str) -> list[ModelEntry]:
    """Parse a ModelServerConfig text proto (model_config_list only, like TF Serving's flag)."""
    from tensorflow_serving.config import model_server_config_pb2

    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:  # TF Serving logs protobuf's wording for this
        raise ValueError(f"Error parsing text-format tensorflow.serving.ModelServerConfig: {error}") from error
    return entries_from_proto(config)


def entries_from_proto(config) -> list[ModelEntry]:
    """Model entries of a ModelServerConfig message (file or gRPC reload request)."""
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError("model config must contain a model_config_list")
    entries = []
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ValueError(f"every model needs a name and a base_path: {model}")
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(f"model {model.name}: unsupported model_platform {model.model_platform!r}")
        entries.append(ModelEntry(
            name=model.name,
            base_path=model.base_path,
            policy=_policy_from_proto(model.model_version_policy),
            labels=dict(model.version_labels),
            logging=_logging_from_proto(model) if model.HasField("logging_config") else None,
        ))
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate model names in config: {names}")
    return entries


def load_model_config_file(path: str) -> list[ModelEntry]:
    with open(path, encoding="utf-8") as handle:
        return parse_model_config(handle.read())


def _policy_from_proto(policy) -> VersionPolicy:
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return VersionPolicy(kind="all")
    if kind == "specific":
        if not policy.specific.versions:
            raise ValueError("a specific version policy needs at least one version")
        return VersionPolicy(kind="specific", versions=frozenset(policy.specific.versions))
    num = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions else 1
    return VersionPolicy(kind="latest", num_versions=num)


def _logging_from_proto(model) -> RequestLogging:
    """ModelConfig.logging_config; the rate is checked as TF Serving's request logger does."""
    config = model.logging_config
    rate = config.sampling_config.sampling_rate
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"model {model.name}: Invalid sampling rate: {rate}")
    if not config.log_collector_config.filename_prefix:
        raise ValueError(f"model {model.name}: logging_config needs log_collector_config.filename_prefix")
    return RequestLogging(rate, config.log_collector_config.filename_prefix)
