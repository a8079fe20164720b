"""Pipeline definition, configuration, runners and the `python -m pipeline` CLI."""

import os
import warnings

# Quiet the import-time noise of the TF/Google Cloud stack; `--verbose` shows TFX's own logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", message="You are using a non-supported Python version", category=FutureWarning)
