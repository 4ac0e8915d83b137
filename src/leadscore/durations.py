"""Durations as people write them in flags and model files: `500ms`, `30s`, `5m`, `2h`, `7d`."""

from __future__ import annotations

import re

from leadscore.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """`1500ms`, `30s`, `5m`, `2h`, `180d`; a bare number is seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise ConfigError(f"{text!r} is not a duration; examples: 500ms, 30s, 5m, 2h, 180d")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2) or "s"])
