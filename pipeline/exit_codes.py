"""Exit codes of `python -m pipeline`, one list for every command (the README documents them)."""

DONE = 0
FAILED = 1        # a component failed (e.g. a data anomaly), or another error
USAGE = 2         # bad command-line input: unknown data set, malformed option, missing file
NOT_BLESSED = 3   # the run finished but the model missed a gate: nothing was pushed
BREACH = 4        # `monitor` found skew, out-of-domain or out-of-range values
