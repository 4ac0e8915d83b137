"""Durations as people write them in flags and model files (`500ms`, `30s`, `5m`, `2h`, `7d`),
and points in time."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from leadscore.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": HOUR_MS, "d": DAY_MS}


def parse_duration_ms(text: str) -> int:
    """`1500ms`, `30s`, `5m`, `2h`, `180d`; a bare number is seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"{text!r} is not a duration; examples: 500ms, 30s, 5m, 2h, 180d")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2) or "s"])


def parse_time_ms(text: str) -> int:
    """A point in time: epoch milliseconds, or ISO 8601 (`2026-01-31T09:00:00Z`; UTC
    unless an offset is given)."""
    text = str(text).strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{text!r} is not a time; examples: 2026-01-31T09:00:00Z, 1769850000000"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)
