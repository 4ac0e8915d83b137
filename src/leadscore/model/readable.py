"""How a stage condition reads for a person: the lead's value beside the bound (pure)."""

from __future__ import annotations

from leadscore.durations import DAY_MS, HOUR_MS


def bound_text(bound: float) -> str:
    """A bound as written in the model: `40`, `12.5`."""
    return _trim(f"{bound:.6f}")


def figure(value: float, bound: float) -> str:
    """A lead's score as a condition shows it: one decimal at most, more if one would make
    it look equal to a bound it is not equal to (`40.04 >= 40`, not `40 >= 40`)."""
    if value == bound:
        return bound_text(bound)
    for digits in (1, 2, 3, 6):
        text = _trim(f"{value:.{digits}f}")
        if text != _trim(f"{bound:.{digits}f}"):
            return text
    return repr(value)


def span_text(ms: int) -> str:
    """A duration in the units of model files (`30d`, `2.5h`, `45m`, `30s`, `500ms`)."""
    if ms == 0:
        return "0s"
    for unit, size in (("d", DAY_MS), ("h", HOUR_MS), ("m", 60_000), ("s", 1000)):
        if abs(ms) >= size:
            return _trim(f"{ms / size:.1f}") + unit
    return f"{ms}ms"


def tag_text(verb: str, tags: frozenset[str]) -> str:
    """`has tag customer`, `lacks tags bot, student`."""
    return f"{verb} tag{'s' if len(tags) > 1 else ''} {', '.join(sorted(tags))}"


def _trim(number: str) -> str:
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return "0" if number == "-0" else number
