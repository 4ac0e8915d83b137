"""Fold a profile's events into its state and derive the outputs they cause.

Pure: no I/O, no clock. The same state, events and model always give the same result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from leadscore.events import Event, EventType, ProfileKey
from leadscore.model import Model, Rule
from leadscore.model.conditions import VISIT_MEMORY
from leadscore.scoring.engagement import decay_factor
from leadscore.scoring.outputs import (
    CategoryChange,
    Cause,
    Output,
    Reason,
    ScoreChanged,
    StageTransitioned,
    output_id,
)
from leadscore.scoring.state import CategoryScore, Change, LeadState, event_digest
from leadscore.scoring.timeline import fit_of, lead_facts, next_change

DEFAULT_EVENT_MEMORY = 100
HISTORY = 8  # published changes kept per lead, for `leadscore inspect`
REPEAT_MEMORY = 16  # matches kept per `repeat_within` rule (within the allowed lateness)
EARLY_RESPONSES = 8  # responses before the first request kept (within the allowed lateness)
MAX_CHANGES = 100  # time-driven changes applied at once, at most (a guard, never reached)


@dataclass(slots=True)
class Scored:
    """The result of folding events: the new state, its outputs and what was skipped."""

    state: LeadState
    outputs: list[Output] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0  # events older than the allowed lateness behind the lead's newest event
    speed_to_lead_ms: int | None = None  # set when first measured by these events
    # for each output, the id of the input event being folded when it was emitted (a
    # time-driven change that came due before that event's time, or the event itself)
    emitted_by: list[str] = field(default_factory=list)


def score(
    profile: ProfileKey,
    state: LeadState | None,
    events: Iterable[Event],
    model: Model,
    *,
    memory: int = DEFAULT_EVENT_MEMORY,
    in_place: bool = False,
) -> Scored:
    """Fold `events` (in arrival order) into a copy of `state`, or into `state` itself if
    `in_place` (a caller that owns it and drops it unless the result is kept: the copy
    costs about as much as folding an event).

    An event whose id is among the profile's last `memory` event ids is a redelivery and
    changes nothing. Every other event is applied once and may emit a StageTransitioned
    and/or a ScoreChanged, each with an id derived from the event's id. Before an event,
    the time-driven changes that came due before its time are applied (see `advance`), so
    the outputs do not depend on when the worker sweeps.
    """
    if state is None:
        new = LeadState()
    elif in_place:
        new = state
        for name in [n for n in new.categories if not model.has_category(n)]:
            del new.categories[name]
            new.due_memo = None
    else:
        new = _copy(state, model)
    result = Scored(new)
    for event in events:
        digest = event_digest(event.event_id)
        if digest in new.recent:
            result.duplicates += 1
            continue
        if new.events and event.occurred_at > new.as_of:
            _advance(profile, new, model, event.occurred_at - 1, result, event.event_id)
        if new.events and event.occurred_at < new.last_activity - model.allowed_lateness_ms:
            result.late += 1
        _apply(new, event, model, int.from_bytes(digest[:4], "big"))
        new.due_memo = None  # the state changed: its next time-driven change too
        new.recent.append(digest)
        if len(new.recent) > memory:
            del new.recent[: len(new.recent) - memory]
        known = new.published_speed
        outputs = _outputs(profile, new, Cause(event.event_id, event.occurred_at), model)
        result.outputs += outputs
        result.emitted_by += [event.event_id] * len(outputs)
        if known is None and new.published_speed is not None:
            result.speed_to_lead_ms = new.published_speed
    return result


def advance(profile: ProfileKey, state: LeadState, model: Model, until: int) -> Scored:
    """Apply to a copy of `state` every time-driven change due at or before `until`: the
    lead's clock moves to each due time, and the stage transition, category levels and
    score it brings are published with ids derived from the lead and that time (a sweep
    that is repeated after a crash emits the same ids)."""
    result = Scored(_copy(state, model))
    _advance(profile, result.state, model, until, result, "")
    return result


def _advance(
    profile: ProfileKey, state: LeadState, model: Model, until: int, result: Scored, by: str
) -> None:
    for _ in range(MAX_CHANGES):
        due = next_change(state, model, until)
        if due is None:
            return
        state.due_memo = None  # what follows changes the state
        _move_clock(state, model, due.at)
        outputs = _outputs(profile, state, Cause.due(due.at, due.cause), model)
        result.outputs += outputs
        result.emitted_by += [by] * len(outputs)


def _move_clock(state: LeadState, model: Model, t: int) -> None:
    """Decay every score from the lead's clock to a later time `t` and move the clock."""
    if t <= state.as_of:
        return
    _decay(state, decay_factor(t - state.as_of, model.half_life_ms), model)
    for name, category in state.categories.items():
        half_life = model.category(name).half_life_ms
        _decay(category, decay_factor(t - state.as_of, half_life), model)
    state.as_of = t


class _Book(Protocol):
    """A score kept in event time: the overall engagement, or a category's."""

    engagement: float
    fixed: float
    pending: dict[str, float]
    contributions: dict[str, tuple[float, float]]


def _decay(book: _Book, factor: float, model: Model) -> None:
    book.engagement *= factor
    for name in book.pending:
        if model.decays(name):
            book.pending[name] *= factor
    for name, (earned_total, worth) in book.contributions.items():
        if model.decays(name):
            book.contributions[name] = (earned_total, worth * factor)


def _book(state: LeadState, model: Model, name: str | None) -> tuple[_Book, int]:
    """The score a rule's points go to, and its half-life."""
    if name is None:
        return state, model.half_life_ms
    book = state.categories.get(name)
    if book is None:
        book = state.categories[name] = CategoryScore()
    return book, model.category(name).half_life_ms


def _apply(state: LeadState, event: Event, model: Model, tiebreak: int) -> None:
    """Fold one event into the state: attributes, consent, then the points and tags of
    every engagement rule it matches, with decay in event time.

    Whatever the arrival order, within the allowed lateness, the result is the same: the
    latest attribute and consent by event time (at equal times, the greater value and
    the refusal of contact), the earliest event of a `once` rule, a window's capped sum,
    the later event of a repeated pair; `tiebreak` orders events of the same time."""
    t = event.occurred_at
    if state.events == 0:
        state.as_of = state.first_seen = state.last_activity = t
    _move_clock(state, model, t)
    state.last_activity = max(state.last_activity, t)
    state.first_seen = min(state.first_seen, t)
    state.events += 1
    for name, value in (*event.traits.items(), *event.fields.items()):
        known = state.attributes.get(name)
        if known is None or known[1] < t or (known[1] == t and value > known[0]):
            state.attributes[name] = (value, t)
            state.fit_memo = None
    if event.consent is not None:
        consent = state.consent
        contact = event.consent.contact
        if consent is None or consent[1] < t or (consent[1] == t and consent[0] and not contact):
            state.consent = (contact, t)
    request = model.is_request(event)
    if request:
        _requested(state, t)
    if model.is_response(event):
        _responded(state, t, model.allowed_lateness_ms)
    _count(state, event, request)
    rules = model.rules_for(event)
    tags: frozenset[str] = frozenset()
    if any(rule.reads_tags for rule in rules):
        tags = frozenset(state.tags | fit_of(state, model).tags)
    for rule in rules:
        if not rule.matches(event, tags):
            continue
        if rule.repeat_within_ms is not None:
            for repeat in _repeats(state, model, rule, t, tiebreak):
                _credit(state, model, rule, repeat)
            continue
        if rule.once:
            if rule.name in state.fired:
                _move_once(state, model, rule, t)
                continue
            state.fired[rule.name] = t
        _credit(state, model, rule, t)


def _credit(state: LeadState, model: Model, rule: Rule, t: int) -> None:
    """Credit a rule's points for an event at `t`: its tags, and its points (up to its
    cap in the event's window) to every score it counts towards, decayed to the lead's
    clock (a late event's points are decayed instead of the score)."""
    state.tags.update(rule.tags)
    share, credited_at = 1.0, t
    if rule.cap_points is not None:
        allowed, credited_at = _within_cap(state, model, rule, t)
        share = allowed / rule.points if rule.points else 0.0
    for category, points in rule.counts_toward:
        book, half_life = _book(state, model, category)
        worth = decay_factor(state.as_of - credited_at, half_life)
        _earn(book, rule, points * share, worth)


def _earn(book: _Book, rule: Rule, points: float, worth: float) -> None:
    """Credit a rule's points, worth `worth` of them at the lead's clock, to a score
    (uncapped: a cap on the score's total applies when it is read)."""
    earned = points * worth if rule.decays else points
    if rule.decays:
        book.engagement += earned
    else:
        book.fixed += earned
    if earned:
        book.pending[rule.name] = book.pending.get(rule.name, 0.0) + earned
        at_event_time = earned / worth if rule.decays else earned
        before = book.contributions.get(rule.name, (0.0, 0.0))
        book.contributions[rule.name] = (before[0] + at_event_time, before[1] + earned)


def _requested(state: LeadState, t: int) -> None:
    """A request (speed-to-lead starts) at `t`: the first request is the earliest, and
    the first response the earliest at or after it, whatever the arrival order."""
    if state.first_request_at is not None and t >= state.first_request_at:
        return
    state.first_request_at = t
    answers = [r for r in state.early_responses if r >= t]
    if answers:
        first = min(answers)
        if state.first_response_at is None or first < state.first_response_at:
            state.first_response_at = first
        state.early_responses = [r for r in state.early_responses if r < t]


def _responded(state: LeadState, t: int, lateness_ms: int) -> None:
    """A response at `t`: the first response if after the first request; kept if before
    it (or before any request), for a request that may arrive late."""
    if state.first_request_at is not None and t >= state.first_request_at:
        if state.first_response_at is None or t < state.first_response_at:
            state.first_response_at = t
        return
    early = state.early_responses
    if t not in early:
        early.append(t)
        early.sort()
    oldest = state.last_activity - lateness_ms
    state.early_responses = [r for r in early if r >= oldest][-EARLY_RESPONSES:]


def _repeats(state: LeadState, model: Model, rule: Rule, t: int, tiebreak: int) -> list[int]:
    """Remember this match of a `repeat_within` rule; return the times of the matches to
    credit now: this one if another match came at most `repeat_within_ms` before it, and
    the later matches, not credited yet, that this one (arriving late) makes repeats.

    Matches are ordered by (time, tiebreak), so at equal times exactly one is the later.
    Those older than the allowed lateness (plus the window) are forgotten."""
    within = rule.repeat_within_ms
    assert within is not None
    matches = state.matched.setdefault(rule.name, [])
    me = (t, tiebreak)
    repeated = any((m[0], m[1]) < me and t - m[0] <= within for m in matches)
    credit = [t] if repeated else []
    for i, (at, order, credited) in enumerate(matches):
        if not credited and me < (at, order) and at - t <= within:
            matches[i] = (at, order, True)
            credit.append(at)
    matches.append((t, tiebreak, repeated))
    matches.sort()
    oldest = state.last_activity - model.allowed_lateness_ms - within
    state.matched[rule.name] = [m for m in matches if m[0] >= oldest][-REPEAT_MEMORY:]
    return credit


def _move_once(state: LeadState, model: Model, rule: Rule, t: int) -> None:
    """A once-per-lead rule counts its earliest event, whatever the arrival order: an
    earlier event moves the credit (and its decay) back to that event's time."""
    counted_at = state.fired[rule.name]
    if t >= counted_at:
        return
    state.fired[rule.name] = t
    if not rule.decays:
        return
    for name, _ in rule.counts_toward:
        book, half_life = _book(state, model, name)
        if rule.name not in book.contributions:
            continue
        before = book.contributions[rule.name]  # what it earned, as of its event time
        gain = before[0] * (
            decay_factor(state.as_of - t, half_life)
            - decay_factor(state.as_of - counted_at, half_life)
        )
        book.engagement += gain
        book.pending[rule.name] = book.pending.get(rule.name, 0.0) + gain
        book.contributions[rule.name] = (before[0], before[1] + gain)


def _within_cap(state: LeadState, model: Model, rule: Rule, t: int) -> tuple[float, int]:
    """The rule's points that still fit its cap in the event's window of event time, and
    the time they count from: the window's start, so that which of a window's events
    came first changes nothing.

    Windows are aligned to the epoch. The points used in every window that ends within
    the allowed lateness behind the lead's newest event are remembered; an event older
    than that finds its window forgotten and counts as if it were the window's first.
    """
    assert rule.cap_points is not None
    assert rule.cap_window_ms is not None
    size = rule.cap_window_ms
    window = t // size
    used = state.caps.setdefault(rule.name, {})
    spent = used.get(window, 0.0)
    allowed = max(0.0, min(abs(rule.points), rule.cap_points - spent))
    used[window] = spent + allowed
    oldest = (state.last_activity - model.allowed_lateness_ms) // size
    for old in [w for w in used if w < oldest]:
        del used[old]
    return math.copysign(allowed, rule.points), window * size


def _outputs(profile: ProfileKey, state: LeadState, cause: Cause, model: Model) -> list[Output]:
    """Emit what changed since the last output, and record it as published."""
    diff = changes(profile, state, cause, model)
    record_published(state, diff)
    return diff.outputs


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
    contact = state.consent[0] if state.consent else model.contact_allowed_by_default
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


def _count(state: LeadState, event: Event, request: bool) -> None:
    """The counts and recent visit times that stage conditions test."""
    counted = []
    if request:
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


def _copy(state: LeadState, model: Model) -> LeadState:
    """A copy to fold into; the scores of categories the model no longer has are dropped
    (restarting with an edited model keeps the rest of the state)."""
    return LeadState(
        last_activity=state.last_activity,
        categories={
            name: score.copy()
            for name, score in state.categories.items()
            if model.has_category(name)
        },
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
        early_responses=list(state.early_responses),
        published_clip=state.published_clip,
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
