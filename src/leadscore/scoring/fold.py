"""Fold one event into a profile's state (pure): attributes, consent, counts, and the
points of every rule it matches, in event time.

Every step is defined on the set of the lead's events, not on their arrival order, for
events within the model's allowed lateness behind the lead's newest event: see `apply`.
"""

from __future__ import annotations

import math
from typing import Protocol

from leadscore.events import Event, EventType
from leadscore.model import Model, Rule
from leadscore.model.conditions import VISIT_MEMORY
from leadscore.scoring.engagement import decay_factor
from leadscore.scoring.state import CategoryScore, LeadState
from leadscore.scoring.timeline import fit_of

REPEAT_MEMORY = 16  # matches kept per `repeat_within` rule (within the allowed lateness)
EARLY_RESPONSES = 8  # responses before the first request kept (within the allowed lateness)


def move_clock(state: LeadState, model: Model, t: int) -> None:
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


def apply(state: LeadState, event: Event, model: Model, tiebreak: int) -> None:
    """Fold one event into the state: attributes, consent, then the points and tags of
    every engagement rule it matches, with decay in event time.

    Whatever the arrival order, within the allowed lateness, the result is the same: the
    latest attribute and consent by event time (at equal times, the greater value and
    the refusal of contact), the earliest event of a `once` rule, a window's capped sum,
    the later event of a repeated pair; `tiebreak` orders events of the same time."""
    t = event.occurred_at
    if state.events == 0:
        state.as_of = state.first_seen = state.last_activity = t
    move_clock(state, model, t)
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
    spent = used.get(window)
    if spent is None:  # a new window: forget those out of the allowed lateness
        spent = 0.0
        oldest = (state.last_activity - model.allowed_lateness_ms) // size
        for old in [w for w in used if w < oldest]:
            del used[old]
    allowed = max(0.0, min(abs(rule.points), rule.cap_points - spent))
    used[window] = spent + allowed
    return math.copysign(allowed, rule.points), window * size


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
