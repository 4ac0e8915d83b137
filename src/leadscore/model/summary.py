"""A readable summary of a model, for `leadscore check-model` (pure)."""

from __future__ import annotations

from leadscore.durations import DAY_MS, HOUR_MS
from leadscore.model.conditions import Idle, Threshold, VisitWindow
from leadscore.model.types import Model, Rule


def summarize(model: Model) -> list[str]:
    """Rules, caps, categories, fit, grades and stages, one line each."""
    cap = f", capped at {model.engagement_cap:g}" if model.engagement_cap else ""
    lines = [
        f"model {model.version}: valid",
        f"allowed lateness {model.allowed_lateness_ms / DAY_MS:g} days: an event up to this "
        "far behind the lead's newest is scored as if it had come in order",
        f"engagement (half-life {model.half_life_ms / DAY_MS:g} days{cap}):",
    ]
    lines += [_rule(rule) for rule in model.rules]
    if model.categories:
        lines.append("categories (scores of their own beside the overall one):")
    for category in model.categories:
        extras = [f"half-life {category.half_life_ms / DAY_MS:g} days"]
        if category.cap is not None:
            extras.append(f"capped at {category.cap:g}")
        if category.levels:
            extras.append("levels " + ", ".join(f"{n}>={v:g}" for n, v in category.levels))
        lines.append(f"  {category.name} ({', '.join(extras)}):")
        for rule in (*model.rules, *model.category_rules):
            for name, points in rule.counts_toward:
                if name == category.name:
                    own = rule in model.category_rules
                    lines.append(_rule(rule, points, "    ", "" if own else " (also overall)"))
    lines.append("fit:")
    for fit_rule in model.fit_rules:
        tags = f" tags {', '.join(fit_rule.tags)}" if fit_rule.tags else ""
        lines.append(f"  {fit_rule.points:+7g}  {fit_rule.name}{tags}: {fit_rule.when}")
    lines.append(
        "grades: fit "
        + ", ".join(f"{n}>={v:g}" for n, v in model.fit_grades.bands)
        + "; engagement "
        + ", ".join(f"{n}>={v:g}" for n, v in model.engagement_grades.bands)
    )
    lines.append("stages (a lead is in the last whose conditions hold):")
    for stage in model.stages:
        notes = ["kept: no way back"] if stage.keep else []
        causes = sorted({_time_cause(t) for t in stage.timers})
        if causes:
            notes.append(f"changes with time: {', '.join(causes)}")
        note = f" ({'; '.join(notes)})" if notes else ""
        lines.append(f"  {stage.name}{note}: {stage.when or 'where every lead starts'}")
    return lines


def duration_text(ms: int) -> str:
    """`7d`, `12h`, `30m`, `5s`, or milliseconds."""
    for unit, size in (("d", DAY_MS), ("h", HOUR_MS), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _rule(rule: Rule, points: float | None = None, indent: str = "  ", note: str = "") -> str:
    flags = [f for f, on in (("once", rule.once), ("no decay", not rule.decays)) if on]
    if rule.cap_points is not None and rule.cap_window_ms is not None:
        flags.append(f"cap {rule.cap_points:g} per {duration_text(rule.cap_window_ms)}")
    if rule.repeat_within_ms is not None:
        flags.append(f"repeat within {duration_text(rule.repeat_within_ms)}")
    shared = [name for name, _ in rule.counts_toward if name is not None]
    if points is None and shared and (None, rule.points) in rule.counts_toward:
        flags.append(f"also {', '.join(shared)}")
    tags = f" tags {', '.join(rule.tags)}" if rule.tags else ""
    extra = f" ({', '.join(flags)})" if flags else ""
    value = rule.points if points is None else points
    return f"{indent}{value:+7g}  {rule.name}{extra}{note}{tags}: {rule.when}"


def _time_cause(timer: Idle | Threshold | VisitWindow) -> str:
    if isinstance(timer, Threshold):
        return f"decay of {timer.score.replace('category:', 'category ')}"
    if isinstance(timer, Idle):
        return f"inactivity ({duration_text(timer.span)})"
    return f"visits leaving a {duration_text(timer.window)} window"
