"""Fold a profile's events into its state and derive the outputs they cause.

Pure: no I/O, no clock. The same state, events and model always give the same result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from leadscore.model import Fit, Model, Rule
from leadscore.model.conditions import VISIT_MEMORY, LeadFacts
from leadscore.scoring.engagement import decay_factor
from leadscore.scoring.events import Event, EventType, ProfileKey
from leadscore.scoring.outputs import Output, Reason, ScoreChanged, StageTransitioned, output_id
from leadscore.scoring.state import Change, LeadState, event_digest

DEFAULT_EVENT_MEMORY = 100
HISTORY = 8  # published changes kept per lead, for `leadscore inspect`
REPEAT_MEMORY = 5  # match times kept per `repeat_within` rule


@dataclass(slots=True)
class Scored:
    """The result of folding events: the new state, its outputs and what was skipped."""

    state: LeadState
    outputs: list[Output] = field(default_factory=list)
    duplicates: int = 0
    speed_to_lead_ms: int | None = None  # set when first measured by these events


def score(
    profile: ProfileKey,
    state: LeadState | None,
    events: Iterable[Event],
    model: Model,
    *,
    memory: int = DEFAULT_EVENT_MEMORY,
) -> Scored:
    """Fold `events` (in arrival order) into a copy of `state`.

    An event whose id is among the profile's last `memory` event ids is a redelivery and
    changes nothing. Every other event is applied once and may emit a StageTransitioned
    and/or a ScoreChanged, each with an id derived from the event's id.
    """
    new = _copy(state) if state is not None else LeadState()
    result = Scored(new)
    for event in events:
        digest = event_digest(event.event_id)
        if digest in new.recent:
            result.duplicates += 1
            continue
        _apply(new, event, model)
        new.recent.append(digest)
        if len(new.recent) > memory:
            del new.recent[: len(new.recent) - memory]
        known = new.published_speed
        result.outputs.extend(_outputs(profile, new, event, model))
        if known is None and new.published_speed is not None:
            result.speed_to_lead_ms = new.published_speed
    return result


def _apply(state: LeadState, event: Event, model: Model) -> None:
    """Fold one event into the state: attributes, consent, then the points and tags of
    every engagement rule it matches, with decay in event time."""
    t = event.occurred_at
    if state.events == 0:
        state.as_of = t
        state.first_seen = t
    if t > state.as_of:
        factor = decay_factor(t - state.as_of, model.half_life_ms)
        state.engagement *= factor
        for name in state.pending:
            if model.decays(name):
                state.pending[name] *= factor
        for name, (earned_total, worth) in state.contributions.items():
            if model.decays(name):
                state.contributions[name] = (earned_total, worth * factor)
        state.as_of = t
    # a late event's points are decayed to the lead's clock instead of decaying the score
    lateness = decay_factor(state.as_of - t, model.half_life_ms)
    state.first_seen = min(state.first_seen, t)
    state.events += 1
    for name, value in (*event.traits.items(), *event.fields.items()):
        known = state.attributes.get(name)
        if known is None or known[1] <= t:
            state.attributes[name] = (value, t)
    if event.consent is not None and (state.consent is None or state.consent[1] <= t):
        state.consent = (event.consent.contact, t)
    if model.is_request(event) and (state.first_request_at is None or t < state.first_request_at):
        state.first_request_at = t
    if (
        model.is_response(event)
        and state.first_request_at is not None
        and t >= state.first_request_at
        and (state.first_response_at is None or t < state.first_response_at)
    ):
        state.first_response_at = t
    _count(state, model, event)
    rules = model.rules_for(event)
    tags: frozenset[str] = frozenset()
    if any(rule.reads_tags for rule in rules):
        tags = frozenset(state.tags | model.fit(state.attribute_values()).tags)
    for rule in rules:
        if not rule.matches(event, tags):
            continue
        if rule.repeat_within_ms is not None and not _repeats(state, rule, t):
            continue
        if rule.once:
            if rule.name in state.fired:
                _move_once(state, model, rule, t)
                continue
            state.fired[rule.name] = t
        state.tags.update(rule.tags)
        points, worth = rule.points, lateness
        if rule.cap_points is not None:
            points, credited_at = _within_cap(state, rule, t)
            worth = decay_factor(state.as_of - credited_at, model.half_life_ms)
        earned = _within_total_cap(state, model, points * worth if rule.decays else points)
        if rule.decays:
            state.engagement += earned
        else:
            state.fixed += earned
        if earned:
            state.pending[rule.name] = state.pending.get(rule.name, 0.0) + earned
            at_event_time = earned / worth if rule.decays else earned
            before = state.contributions.get(rule.name, (0.0, 0.0))
            state.contributions[rule.name] = (before[0] + at_event_time, before[1] + earned)


def _repeats(state: LeadState, rule: Rule, t: int) -> bool:
    """Remember this match; True if another one came at most `repeat_within_ms` before."""
    assert rule.repeat_within_ms is not None
    times = state.matched.setdefault(rule.name, [])
    repeated = any(0 <= t - before <= rule.repeat_within_ms for before in times)
    times.append(t)
    times.sort()
    del times[:-REPEAT_MEMORY]
    return repeated


def _move_once(state: LeadState, model: Model, rule: Rule, t: int) -> None:
    """A once-per-lead rule counts its earliest event, whatever the arrival order: an
    earlier event moves the credit (and its decay) back to that event's time."""
    counted_at = state.fired[rule.name]
    if t >= counted_at:
        return
    state.fired[rule.name] = t
    if not rule.decays or rule.name not in state.contributions:
        return
    half_life = model.half_life_ms
    before = state.contributions[rule.name]
    share = rule.points and before[0] / rule.points  # the fraction that was not capped
    gain = (
        share
        * rule.points
        * (
            decay_factor(state.as_of - t, half_life)
            - decay_factor(state.as_of - counted_at, half_life)
        )
    )
    state.engagement += gain
    state.pending[rule.name] = state.pending.get(rule.name, 0.0) + gain
    state.contributions[rule.name] = (before[0], before[1] + gain)


def _within_cap(state: LeadState, rule: Rule, t: int) -> tuple[float, int]:
    """The rule's points that still fit its cap in the event's window of event time, and
    the time they count from: the window's start, so that which of a window's events
    came first changes nothing.

    Windows are aligned to the epoch. The current and the previous window are remembered;
    an event later than that counts as capped (it earns nothing).
    """
    assert rule.cap_points is not None
    assert rule.cap_window_ms is not None
    window = t // rule.cap_window_ms
    current = state.as_of // rule.cap_window_ms
    used = state.caps.setdefault(rule.name, {})
    for old in [w for w in used if w < current - 1]:
        del used[old]
    if window < current - 1:
        return 0.0, t
    spent = used.get(window, 0.0)
    allowed = max(0.0, min(abs(rule.points), rule.cap_points - spent))
    used[window] = spent + allowed
    return math.copysign(allowed, rule.points), window * rule.cap_window_ms


def _within_total_cap(state: LeadState, model: Model, earned: float) -> float:
    """Positive points only up to the model's cap on the engagement total."""
    if model.engagement_cap is None or earned <= 0:
        return earned
    return max(0.0, min(earned, model.engagement_cap - (state.engagement + state.fixed)))


def _outputs(profile: ProfileKey, state: LeadState, event: Event, model: Model) -> list[Output]:
    """Compare the state with what was last published and emit what changed."""
    facts, _ = lead_facts(state, model)
    fit, engagement, total, tags = facts.fit, facts.engagement, facts.total, facts.tags
    grade = model.grade(fit, engagement)
    contact = state.consent[0] if state.consent else model.contact_allowed_by_default
    stage = model.stage(facts, state.kept)
    if stage.keep and model.stage_index(stage.name) > model.stage_index(state.kept):
        state.kept = stage.name
    sorted_tags = tuple(sorted(tags))
    speed = state.speed_to_lead_ms
    contact = state.consent[0] if state.consent else model.contact_allowed_by_default
    outputs: list[Output] = []

    if stage.name != state.stage:
        previous = state.stage
        outputs.append(
            StageTransitioned(
                event_id=output_id(profile, event.event_id, "stage_transitioned", len(outputs)),
                profile=profile,
                occurred_at=event.occurred_at,
                as_of=state.as_of,
                model_version=model.version,
                cause_event_id=event.event_id,
                from_stage=previous,
                to_stage=stage.name,
                reason=_transition_reason(model, previous, stage.name),
                fit=fit,
                engagement=engagement,
                total=total,
                time_in_previous_stage_ms=(
                    state.as_of - state.stage_since if state.stage_since is not None else None
                ),
            )
        )
        state.stage = stage.name
        state.stage_since = state.as_of

    if (
        outputs
        or round(total, 1) != round(state.published_total, 1)
        or grade != state.published_grade
        or contact != state.published_contact
        or sorted_tags != state.published_tags
        or speed != state.published_speed
    ):
        outputs.append(
            ScoreChanged(
                event_id=output_id(profile, event.event_id, "score_changed", len(outputs)),
                profile=profile,
                occurred_at=event.occurred_at,
                as_of=state.as_of,
                model_version=model.version,
                cause_event_id=event.event_id,
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
            )
        )
        state.published_total = total
        state.published_fit = fit
        state.published_grade = grade
        state.published_contact = contact
        state.published_tags = sorted_tags
        state.published_speed = speed
        state.pending.clear()
        change = outputs[-1]
        assert isinstance(change, ScoreChanged)
        state.history.append(
            Change(
                state.as_of,
                event.event_id,
                total,
                change.delta,
                stage.name,
                tuple((r.rule, r.points) for r in change.reasons),
            )
        )
        del state.history[:-HISTORY]
    return outputs


def _reasons(state: LeadState, fit: float, engagement: float) -> tuple[Reason, ...]:
    """Why the total moved since the last output; the points add up to the delta.

    Rule points earned since then (decayed to `as_of`), the change in fit, and decay:
    what the previously published engagement lost over the event time that passed.
    """
    earned = sum(state.pending.values())
    previous_engagement = state.published_total - state.published_fit
    parts = [Reason(rule, points) for rule, points in sorted(state.pending.items())]
    parts.append(Reason("fit", fit - state.published_fit))
    parts.append(Reason("decay", engagement - earned - previous_engagement))
    return tuple(r for r in parts if abs(r.points) > 1e-9)


def _transition_reason(model: Model, previous: str | None, current: str) -> str:
    if previous is None:
        return "first_event"
    before, after = model.stage_index(previous), model.stage_index(current)
    if before < 0:
        return "model_changed"
    return "progressed" if after > before else "regressed"


def lead_facts(state: LeadState, model: Model) -> tuple[LeadFacts, Fit]:
    """What stage conditions test, at the lead's own clock (`as_of`)."""
    fit = model.fit(state.attribute_values())
    engagement = state.engagement + state.fixed
    facts = LeadFacts(
        total=fit.points + engagement,
        fit=fit.points,
        engagement=engagement,
        tags=frozenset(state.tags | fit.tags),
        counts=state.counts,
        visit_times=tuple(state.visits),
        last_activity=state.as_of,
        now=state.as_of,
    )
    return facts, fit


def _count(state: LeadState, model: Model, event: Event) -> None:
    """The counts and recent visit times that stage conditions test."""
    counted = []
    if model.is_request(event):
        counted.append("requests")
    if event.type is EventType.FORM:
        counted.append("forms")
    if event.type is EventType.CALL and event.answered:
        counted.append("answered_calls")
    for name in counted:
        state.counts[name] = state.counts.get(name, 0) + 1
    if event.type is EventType.VISIT:
        state.visits.append(event.occurred_at)
        state.visits.sort()
        del state.visits[:-VISIT_MEMORY]


def _copy(state: LeadState) -> LeadState:
    return LeadState(
        engagement=state.engagement,
        fixed=state.fixed,
        tags=set(state.tags),
        fired=dict(state.fired),
        caps={rule: dict(used) for rule, used in state.caps.items()},
        matched={rule: list(times) for rule, times in state.matched.items()},
        counts=dict(state.counts),
        visits=list(state.visits),
        kept=state.kept,
        contributions=dict(state.contributions),
        history=list(state.history),
        first_request_at=state.first_request_at,
        first_response_at=state.first_response_at,
        published_tags=state.published_tags,
        published_speed=state.published_speed,
        as_of=state.as_of,
        first_seen=state.first_seen,
        events=state.events,
        attributes=dict(state.attributes),
        consent=state.consent,
        stage=state.stage,
        stage_since=state.stage_since,
        published_total=state.published_total,
        published_fit=state.published_fit,
        published_grade=state.published_grade,
        published_contact=state.published_contact,
        pending=dict(state.pending),
        recent=list(state.recent),
    )
