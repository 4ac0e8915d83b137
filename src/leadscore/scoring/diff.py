"""What a profile's state shows that its last outputs did not (pure), and recording
outputs as published."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from leadscore.events import ProfileKey
from leadscore.model import Model
from leadscore.scoring.outputs import (
    CategoryChange,
    Cause,
    Output,
    Reason,
    ScoreChanged,
    StageTransitioned,
    output_id,
)
from leadscore.scoring.state import CategoryScore, Change, LeadState
from leadscore.scoring.timeline import lead_facts

HISTORY = 8  # published changes kept per lead, for `leadscore inspect`


@dataclass(slots=True)
class Diff:
    """What a state shows that its last outputs did not: the outputs to publish (a stage
    transition, then a score change, either or both or none) and the furthest `keep`
    stage reached, counting the stage now."""

    outputs: list[Output]
    kept: str | None
    transition: StageTransitioned | None = None
    change: ScoreChanged | None = None


def changes(profile: ProfileKey, state: LeadState, cause: Cause, model: Model) -> Diff:
    """Compare the state with what was last published (pure: the state is only read).

    A StageTransitioned when the stage differs; a ScoreChanged with it, or when the total
    rounded to a tenth, the grade, consent, tags, speed-to-lead or a category's value or
    level moved. Output ids derive from the cause and the output's index."""
    facts, _ = lead_facts(state, model)
    fit, engagement, total, tags = facts.fit, facts.engagement, facts.total, facts.tags
    grade = model.grade(fit, engagement)
    stage = model.stage(facts, state.kept)
    kept = state.kept
    if stage.keep and model.stage_index(stage.name) > model.stage_index(kept):
        kept = stage.name
    sorted_tags = tuple(sorted(tags))
    speed = state.speed_to_lead_ms
    contact = (
        not model.anonymous and state.consent[0]
        if state.consent
        else model.contact_allowed_by_default
    )
    categories = _category_changes(state, model, facts.categories)
    diff = Diff([], kept)

    if stage.name != state.stage:
        previous = state.stage
        conditions, explanation = stage.why(facts)
        diff.transition = StageTransitioned(
            event_id=output_id(profile, cause.event_id, "stage_transitioned", 0),
            profile=profile,
            occurred_at=cause.occurred_at,
            as_of=state.as_of,
            model_version=model.version,
            cause_event_id=cause.event_id,
            from_stage=previous,
            to_stage=stage.name,
            reason=cause.trigger or _transition_reason(model, previous, stage.name),
            fit=fit,
            engagement=engagement,
            total=total,
            time_in_previous_stage_ms=(
                state.as_of - state.stage_since if state.stage_since is not None else None
            ),
            inactive_for_ms=state.as_of - state.last_activity if cause.trigger else None,
            conditions=conditions,
            explanation=explanation,
        )
        diff.outputs.append(diff.transition)

    if (
        diff.transition is not None
        or round(total, 1) != round(state.published_total, 1)
        or grade != state.published_grade
        or contact != state.published_contact
        or sorted_tags != state.published_tags
        or speed != state.published_speed
        or any(_moved(state.categories[c.name], c) for c in categories)
    ):
        diff.change = ScoreChanged(
            event_id=output_id(profile, cause.event_id, "score_changed", len(diff.outputs)),
            profile=profile,
            occurred_at=cause.occurred_at,
            as_of=state.as_of,
            model_version=model.version,
            cause_event_id=cause.event_id,
            fit=fit,
            engagement=engagement,
            total=total,
            previous_total=state.published_total,
            delta=total - state.published_total,
            grade=grade,
            stage=stage.name,
            reasons=_reasons(state, fit, engagement),
            contact_allowed=contact,
            speed_to_lead_ms=speed,
            tags=sorted_tags,
            categories=categories,
        )
        diff.outputs.append(diff.change)
    return diff


def record_published(state: LeadState, diff: Diff) -> None:
    """Record a diff's outputs as what was last published: the next diff is taken
    against them (the stage, the published figures, the history `inspect` shows)."""
    state.kept = diff.kept
    if diff.transition is not None:
        state.stage = diff.transition.to_stage
        state.stage_since = state.as_of
    change = diff.change
    if change is None:
        return
    state.published_total = change.total
    state.published_fit = change.fit
    state.published_grade = change.grade
    state.published_contact = change.contact_allowed
    state.published_tags = change.tags
    state.published_speed = change.speed_to_lead_ms
    state.published_clip = state.engagement + state.fixed - change.engagement
    state.pending.clear()
    for moved in change.categories:
        published = state.categories[moved.name]
        published.published = moved.value
        published.published_level = moved.level
        published.published_clip = published.engagement + published.fixed - moved.value
        published.pending.clear()
    state.history.append(
        Change(
            state.as_of,
            change.cause_event_id,
            round(change.total, 2),
            round(change.delta, 2),
            change.stage,
            tuple((r.rule, round(r.points, 2)) for r in change.reasons),
        )
    )
    del state.history[:-HISTORY]


def _category_changes(
    state: LeadState, model: Model, values: Mapping[str, float]
) -> tuple[CategoryChange, ...]:
    """Every category the lead has a score in, with its change since the last output."""
    changes = []
    for name, score in sorted(state.categories.items()):
        value = values[name]
        raw = score.engagement + score.fixed
        earned = sum(score.pending.values())
        reasons = [Reason(rule, points) for rule, points in sorted(score.pending.items())]
        reasons.append(Reason("decay", raw - earned - score.published - score.published_clip))
        reasons.append(Reason("cap", score.published_clip - (raw - value)))
        changes.append(
            CategoryChange(
                name,
                value,
                value - score.published,
                model.category(name).level(value),
                tuple(r for r in reasons if abs(r.points) > 1e-9),
            )
        )
    return tuple(changes)


def _moved(score: CategoryScore, change: CategoryChange) -> bool:
    return round(change.value, 1) != round(score.published, 1) or (
        change.level != score.published_level
    )


def _reasons(state: LeadState, fit: float, engagement: float) -> tuple[Reason, ...]:
    """Why the total moved since the last output; the points add up to the delta.

    Rule points earned since then (decayed to `as_of`), the change in fit, decay: what
    the previously published engagement lost over the event time that passed, and cap:
    the change in what the cap on the total takes off (the engagement's points are
    summed uncapped and the cap applies to the sum).
    """
    earned = sum(state.pending.values())
    raw = state.engagement + state.fixed
    previous_raw = state.published_total - state.published_fit + state.published_clip
    parts = [Reason(rule, points) for rule, points in sorted(state.pending.items())]
    parts.append(Reason("fit", fit - state.published_fit))
    parts.append(Reason("decay", raw - earned - previous_raw))
    parts.append(Reason("cap", state.published_clip - (raw - engagement)))
    return tuple(r for r in parts if abs(r.points) > 1e-9)


def _transition_reason(model: Model, previous: str | None, current: str) -> str:
    if previous is None:
        return "first_event"
    before, after = model.stage_index(previous), model.stage_index(current)
    if before < 0:
        return "model_changed"
    return "progressed" if after > before else "regressed"
