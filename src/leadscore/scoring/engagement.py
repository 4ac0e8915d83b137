"""Engagement in event time: exponential decay, kept as (score, as-of time)."""

from __future__ import annotations


def decay_factor(elapsed_ms: int, half_life_ms: int) -> float:
    """How much of a score survives `elapsed_ms` of event time: 2^(-elapsed/half_life)."""
    if elapsed_ms <= 0:
        return 1.0
    return float(2.0 ** (-elapsed_ms / half_life_ms))
