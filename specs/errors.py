"""Errors shared across layers; each message says what is wrong and what to do."""
from __future__ import annotations


class SpecError(ValueError):
    """A data set spec is missing, malformed or inconsistent."""


class UsageError(ValueError):
    """A command-line value is wrong; the message says which and what to give."""
