"""Cron expressions checked and normalised to the 6-field form KFP's scheduler (robfig/cron) takes."""

from __future__ import annotations

import re

from botyard.components.base.errors import ConfigError

_FIELDS = (  # name, low, high, month/day names allowed
    ("second", 0, 59, False),
    ("minute", 0, 59, False),
    ("hour", 0, 23, False),
    ("day of month", 1, 31, False),
    ("month", 1, 12, True),
    ("day of week", 0, 6, True),
)
_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
_NAMES = re.compile(r"^(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT)$", re.I)


def normalize_cron(cron: str) -> str:
    """KFP's 6-field cron (with seconds) from a 5-field (``m h dom mon dow``) or 6-field expression.

    A 5-field expression gets ``0`` seconds prefixed; ``@daily``-style shortcuts are expanded.
    Anything else raises ``ConfigError`` naming the field at fault.
    """
    text = " ".join(str(cron or "").split())
    if text.lower() in _DESCRIPTORS:
        return _DESCRIPTORS[text.lower()]
    fields = text.split(" ") if text else []
    if len(fields) == 5:
        fields = ["0", *fields]
    elif len(fields) != 6:
        raise ConfigError(
            f"cron {cron!r} has {len(fields)} field(s); use 5 (minute hour day-of-month month day-of-week, "
            "e.g. '0 3 * * *' for 03:00 daily) or 6 with seconds first ('0 0 3 * * *')"
        )
    for value, (name, low, high, names_ok) in zip(fields, _FIELDS):
        _check_field(cron, value, name, low, high, names_ok)
    return " ".join(fields)


def _check_field(cron: str, value: str, name: str, low: int, high: int, names_ok: bool) -> None:
    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"cron {cron!r}: {name} field {value!r} {why}; allowed: {low}-{high}, '*', lists (a,b), ranges (a-b) and steps (*/n)"
        )

    for part in value.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            raise bad(f"has an invalid step {step!r}")
        if base in ("*", "?"):
            continue
        for bound in base.split("-", 1):
            if bound.isdigit():
                if not low <= int(bound) <= high:
                    raise bad(f"is out of range ({bound})")
            elif not (names_ok and _NAMES.match(bound)):
                raise bad("is not a number, '*', range, list or step")
