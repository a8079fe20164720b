"""Readable run logs: which component runs, how long it took; everything else on --verbose.

TFX, Beam and TF log thousands of INFO lines per run. By default only the
runner's component start/finish lines, the `progress.*` loggers' lines (one per
epoch, trial or preparation step) and warnings reach the terminal.
"""
from __future__ import annotations

import logging
import os
import re
import time
import warnings

_COMPONENT_LINE = re.compile(r"Component (\S+) is (running|finished)\.")
# Warnings TFX 1.15 prints on every run that need no action.
_HARMLESS = ("ArtifactQuery.property_predicate is not supported", "Couldn't find python-snappy",
             "is deprecated and will be removed in a future version",
             # The first run of a data set in spans has no earlier statistics to compare with.
             "[previous_span_statistics] Input resolution error",
             # TFMA imports TF-DF when installed; 1.8.1 is the release built for TF 2.15 (tests pass).
             "TensorFlow Decision Forests 1.8.1 is compatible with the following TensorFlow Versions",
             # tf.Transform tracing compute_and_apply_vocabulary; the exported graph tracks its tables as resources.
             "Tables initialized inside a tf.function",
             # TFX's Transform leaves the format off its output; the fallback is the format it wrote.
             "Examples artifact does not have payload_format custom property. Falling back to FORMAT_TF_EXAMPLE")


class _ComponentProgress(logging.Filter):
    """Rewrites LocalDagRunner's start/finish lines with elapsed times; drops other INFO."""

    def __init__(self) -> None:
        super().__init__()
        self._started: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "apache_beam.runners.common":
            return False  # a failed Beam step's traceback; the error itself reaches the CLI's one-line message
        if record.levelno >= logging.WARNING:
            return not any(text in record.getMessage() for text in _HARMLESS)
        if record.name == "progress" or record.name.startswith("progress."):
            return True  # long work's own progress lines (epochs, trials, data preparation)
        match = _COMPONENT_LINE.fullmatch(record.getMessage())
        if not match:
            return False
        name, phase = match.groups()
        if phase == "running":
            self._started[name] = time.monotonic()
            record.msg, record.args = "%-28s running", (name,)
        else:
            seconds = time.monotonic() - self._started.pop(name, time.monotonic())
            record.msg, record.args = "%-28s done in %.1f s", (name, seconds)
        return True


def quiet_native_logs(verbose: bool) -> None:
    """TF's C++ and the Google Cloud stack's import-time chatter, off unless --verbose.

    Must run before TensorFlow is imported: TF reads TF_CPP_MIN_LOG_LEVEL once, when
    its library loads. A level the user set in the environment is kept.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")
    if not verbose:
        warnings.filterwarnings("ignore", message="You are using a non-supported Python version",
                                category=FutureWarning)
        # TFMA's confusion-matrix plot: F1 is 0/0 at the thresholds where nothing is predicted positive.
        warnings.filterwarnings("ignore", message="invalid value encountered in divide", category=RuntimeWarning,
                                module=r"tensorflow_model_analysis\.metrics\.binary_confusion_matrices")


def configure_logging(verbose: bool) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname).1s %(message)s", "%H:%M:%S")
    logging.basicConfig(level=logging.INFO, force=True)
    from absl import logging as absl_logging  # TFX logs through absl; TF/TFX import it anyway
    absl_logging.set_verbosity(absl_logging.INFO)
    handlers = logging.getLogger().handlers + [absl_logging.get_absl_handler()]
    for handler in handlers:
        handler.setFormatter(fmt)
        if not verbose:
            handler.addFilter(_ComponentProgress())
