"""Cron expressions as Kubeflow Pipelines schedules them.

KFP's scheduler (robfig/cron) reads SIX fields with a leading seconds field:
`SEC MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK`, e.g. `0 0 3 * * *` = daily at 03:00.
It would also take a five-field crontab line, but as seconds..month, so
`*/5 * * * *` would fire every 5 seconds, not every 5 minutes. We therefore read
a five-field expression as standard crontab (minute first) and prefix `0 `,
and say so. Descriptors (`@daily`, `@every 6h`, ...) pass through.
"""
from __future__ import annotations

import re

from specs.errors import UsageError

FIELDS = (  # name, low, high, names for the values (index = value)
    ("seconds", 0, 59, ()),
    ("minutes", 0, 59, ()),
    ("hours", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("", "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day of week", 0, 6, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")
FORMAT_HELP = ("KFP cron has 6 fields: SEC MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK, e.g. '0 0 3 * * *' "
               "(daily 03:00) or '0 */30 * * * MON-FRI'; a 5-field crontab line gets '0 ' prefixed; "
               "or @hourly/@daily/@weekly/@monthly/@yearly, @every 6h")


def _value(text: str, field: tuple) -> int:
    name, low, high, names = field
    upper = text.upper()
    if upper in names and upper:
        return names.index(upper)
    if not text.isdigit():
        raise UsageError(f"cron {name} field: {text!r} is not a number{' or name' if names else ''}")
    value = int(text)
    if not low <= value <= high:
        raise UsageError(f"cron {name} field: {value} is outside {low}-{high}")
    return value


def check_field(text: str, field: tuple) -> None:
    """One field: comma-separated `*`, `?`, `N`, `N-M`, each optionally `/STEP`."""
    name = field[0]
    for item in text.split(","):
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise UsageError(f"cron {name} field: step {step!r} in {item!r} must be a positive number")
        if base in ("*", "?"):
            if base == "?" and name not in ("day of month", "day of week"):
                raise UsageError(f"cron {name} field: '?' is only allowed for day of month or day of week")
            continue
        start, dash, end = base.partition("-")
        if not start:
            raise UsageError(f"cron {name} field: {item!r} is empty or malformed")
        first = _value(start, field)
        if dash and _value(end, field) < first:
            raise UsageError(f"cron {name} field: range {base!r} runs backwards")


def kfp_cron(expression: str) -> tuple[str, str | None]:
    """The expression KFP should get, and a note when it differs from what was given."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text in DESCRIPTORS:
            return text, None
        every, _, duration = text.partition(" ")
        if every == "@every" and GO_DURATION.match(duration):
            return text, None
        raise UsageError(f"invalid cron expression {expression!r}: unknown descriptor. {FORMAT_HELP}")
    fields = text.split(" ") if text else []
    note = None
    if len(fields) == 5:
        fields = ["0", *fields]
        note = (f"cron {text!r} has 5 fields (standard crontab, minute first); KFP's cron starts with "
                f"seconds, so scheduling {' '.join(fields)!r}")
    if len(fields) != 6:
        raise UsageError(f"invalid cron expression {expression!r}: {len(fields)} fields. {FORMAT_HELP}")
    try:
        for value, field in zip(fields, FIELDS):
            check_field(value, field)
    except UsageError as e:
        raise UsageError(f"invalid cron expression {expression!r}: {e}. {FORMAT_HELP}") from None
    return " ".join(fields), note
