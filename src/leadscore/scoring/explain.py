"""Why a lead has its score: the total as a sum of fit rules and rule contributions (pure)."""

from __future__ import annotations

import time

from leadscore.events import ProfileKey
from leadscore.model import Model
from leadscore.scoring.state import LeadState
from leadscore.scoring.timeline import lead_facts, next_change


def explain(profile: ProfileKey, state: LeadState, model: Model) -> list[str]:
    """A readable account of a lead's state: every number adds up to the total."""
    facts, fit = lead_facts(state, model)
    engagement, total, tags = facts.engagement, facts.total, sorted(facts.tags)
    stage = model.stage(facts, state.kept)
    in_stage = state.as_of - state.stage_since if state.stage_since is not None else 0
    lines = [
        f"{profile.kind} {profile.id} · model {model.version} · as of {_when(state.as_of)} "
        f"(event time) · {state.events} events since {_when(state.first_seen)}",
        f"total {total:.1f} = fit {fit.points:.1f} + engagement {engagement:.1f} · "
        f"grade {model.grade(fit.points, engagement)} · stage {stage.name} "
        f"for {_duration(in_stage)}",
        f"in stage {stage.name} because: {stage.why(facts)[1]}",
        f"fit {fit.points:.1f}:",
    ]
    lines += [f"  {points:+8.1f}  {name}" for name, points in fit.by_rule] or ["  (no rule)"]
    lines.append(
        f"engagement {engagement:.1f} (half-life {model.half_life_ms / 86_400_000:g} days): "
        "points earned, what they are worth now, and what decay took"
    )
    for name, (earned, worth) in sorted(
        state.contributions.items(), key=lambda item: -abs(item[1][1])
    ):
        note = "" if model.decays(name) else "  (no decay)"
        lines.append(
            f"  {earned:+8.1f}  now {worth:+8.1f}  decay {worth - earned:+7.1f}  {name}{note}"
        )
    if not state.contributions:
        lines.append("  (no rule)")
    for category in model.categories:
        score = state.categories.get(category.name)
        if score is None:
            lines.append(f"category {category.name}: 0.0 (no points yet)")
            continue
        value = facts.categories[category.name]
        level = category.level(value)
        lines.append(
            f"category {category.name}: {value:.1f}"
            + (f" · level {level}" if level else "")
            + f" (half-life {category.half_life_ms / 86_400_000:g} days)"
        )
        for name, (earned, worth) in sorted(
            score.contributions.items(), key=lambda item: -abs(item[1][1])
        ):
            lines.append(
                f"  {earned:+8.1f}  now {worth:+8.1f}  decay {worth - earned:+7.1f}  {name}"
            )
    due = next_change(state, model)
    if due is not None:
        later, _ = lead_facts(state, model, due.at)
        next_stage = model.stage(later, state.kept)
        lines.append(
            f"next change without new events: {_when(due.at)} ({due.cause}): stage "
            f"{next_stage.name} because: {next_stage.why(later)[1]}"
        )
    consent = (
        "unknown"
        if state.consent is None
        else (f"{'yes' if state.consent[0] else 'no'} (consent of {_when(state.consent[1])})")
    )
    speed = state.speed_to_lead_ms
    lines += [
        f"tags: {', '.join(tags) or 'none'} · speed-to-lead: "
        f"{_duration(speed) if speed is not None else 'no response yet'} · "
        f"contact allowed: {consent}",
        "attributes: "
        + (", ".join(f"{k}={v}" for k, (v, _) in sorted(state.attributes.items())) or "none"),
        "recent changes (newest first):",
    ]
    for change in reversed(state.history):
        reasons = ", ".join(f"{rule} {points:+.1f}" for rule, points in change.reasons)
        lines.append(
            f"  {_when(change.as_of)}  {change.delta:+7.1f} -> {change.total:7.1f} "
            f"{change.stage:<14} {reasons}  (cause {change.cause_event_id})"
        )
    return lines


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def _duration(ms: int) -> str:
    seconds = ms / 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
