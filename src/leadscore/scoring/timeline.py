"""A lead seen at a point of time, and when, with no new event, it would next change (pure).

Decay and inactivity change what a lead's stage conditions and category levels see even
when nothing arrives. Every such condition flips at a time that follows from the state: an
idle span after the last activity, a visit leaving its window, a decaying score crossing a
bound. Between those times nothing can change, so the next change is the first of them at
which the lead's stage or a category level differs from now.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from leadscore.model import Fit, Model
from leadscore.model.conditions import (
    Idle,
    LeadFacts,
    Threshold,
    Timer,
    VisitWindow,
    at_least,
)
from leadscore.scoring.engagement import decay_factor
from leadscore.scoring.state import LeadState

INACTIVITY = "inactivity"
DECAY = "decay"


@dataclass(frozen=True, slots=True)
class Due:
    """The time of a lead's next time-driven change, and what causes it."""

    at: int
    cause: str  # INACTIVITY or DECAY


def lead_facts(
    state: LeadState, model: Model, at: int | None = None, fit: Fit | None = None
) -> tuple[LeadFacts, Fit]:
    """What stage conditions test, at time `at` (default: the lead's clock, `as_of`), with
    no event after the state's; `fit` if already computed (it does not change with time)."""
    t = state.as_of if at is None else at
    fit = fit or fit_of(state, model)
    elapsed = t - state.as_of
    if elapsed > 0:
        engagement = state.engagement * decay_factor(elapsed, model.half_life_ms) + state.fixed
        categories = {
            name: capped(
                score.engagement * decay_factor(elapsed, model.category(name).half_life_ms)
                + score.fixed,
                model.category(name).cap,
            )
            for name, score in state.categories.items()
            if model.has_category(name)  # a category removed from the model is ignored
        }
    else:  # at the lead's clock nothing has decayed (the same floats as a factor of 1.0)
        engagement = state.engagement + state.fixed
        categories = {
            name: capped(score.engagement + score.fixed, model.category(name).cap)
            for name, score in state.categories.items()
            if model.has_category(name)
        }
    engagement = capped(engagement, model.engagement_cap)
    facts = LeadFacts(
        fit.points + engagement,
        fit.points,
        engagement,
        frozenset(state.tags | fit.tags) if state.tags else fit.tags,
        state.counts,
        tuple(state.visits),
        state.last_activity,
        t,
        categories,
    )
    return facts, fit


def capped(raw: float, cap: float | None) -> float:
    """A score as read: its points (decayed) up to its cap. The state keeps the sum
    uncapped, so that where the cap clips does not depend on the order of events."""
    return raw if cap is None or raw <= cap else cap


def fit_of(state: LeadState, model: Model) -> Fit:
    """The fit of the lead's attributes, remembered with the state until they change."""
    memo = state.fit_memo
    if memo is None or memo[0] is not model:  # type: ignore[index]
        memo = state.fit_memo = (model, model.fit(state.attribute_values()))
    return memo[1]  # type: ignore[index,no-any-return]


def situation(
    state: LeadState, model: Model, at: int | None = None, fit: Fit | None = None
) -> tuple[object, ...]:
    """What a time-driven change changes: the stage and every category's level."""
    return _situation(lead_facts(state, model, at, fit)[0], state, model)


def _situation(facts: LeadFacts, state: LeadState, model: Model) -> tuple[object, ...]:
    levels = tuple(c.level(facts.categories.get(c.name, 0.0)) for c in model.categories)
    return (model.stage(facts, state.kept).name, *levels)


def next_change(state: LeadState, model: Model, until: int | None = None) -> Due | None:
    """The first time after `as_of` (and at or before `until`, if given) at which, with
    no new event, the lead's stage or a category level would change; None if waiting
    changes neither."""
    if state.events == 0 or not model.changes_with_time:
        return None
    memo = state.due_memo
    if memo is not None and memo[0] is model:  # type: ignore[index]
        known: Due | None = memo[1]  # type: ignore[index]
        return known if known is not None and (until is None or known.at <= until) else None
    due = _next_change(state, model, until)
    if due is not None or until is None:  # found before `until`, it is the next change
        state.due_memo = (model, due)
    return due


def _next_change(state: LeadState, model: Model, until: int | None) -> Due | None:
    fit = fit_of(state, model)
    last = until if until is not None else math.inf
    if not _any_flip(state, model, fit, last):
        return None  # the common case before an event: nothing can change that soon
    facts, _ = lead_facts(state, model, fit=fit)
    timers: list[Timer] = []
    first = max(model.stage_index(state.kept), 0)
    for stage in model.stages[first + 1 :]:
        # a stage that fails a condition time cannot change is out of reach by waiting
        if stage.timers and stage.holds_without_time(facts):
            timers += stage.timers
    for category in model.categories:
        if category.name in state.categories:
            timers += category.timers
    candidates = sorted(
        c
        for c in {c for timer in timers for c in _flips(timer, state, model, fit)}
        if state.as_of < c[0] <= last
    )
    if not candidates:
        return None
    now = _situation(facts, state, model)
    for at, cause in candidates:
        if situation(state, model, at, fit) != now:
            return Due(at, cause)
    return None


def _any_flip(state: LeadState, model: Model, fit: Fit, last: float) -> bool:
    """Some timer of a stage after the kept one, or of a category the lead has a score in,
    may turn in (as_of, last]: a superset of the candidates `next_change` checks."""
    as_of = state.as_of
    for timer in model.timers_after(state.kept):
        for at, _ in _flips(timer, state, model, fit):
            if as_of < at <= last:
                return True
    for category in model.categories:
        if category.name in state.categories:
            for timer in category.timers:
                for at, _ in _flips(timer, state, model, fit):
                    if as_of < at <= last:
                        return True
    return False


def _flips(timer: Timer, state: LeadState, model: Model, fit: Fit) -> list[tuple[int, str]]:
    """The times at which `timer`'s condition may turn (the first moment it has turned)."""
    if isinstance(timer, Idle):
        return [
            (state.last_activity + timer.span, INACTIVITY),
            (state.last_activity + timer.span + 1, INACTIVITY),
        ]
    if isinstance(timer, VisitWindow):
        return [(t + timer.window + 1, INACTIVITY) for t in state.visits]
    assert isinstance(timer, Threshold)
    if timer.score.startswith("category:"):
        name = timer.score.partition(":")[2]
        score = state.categories.get(name)
        if score is None or not model.has_category(name):
            return []
        decaying, rest = score.engagement, score.fixed
        half_life = model.category(name).half_life_ms
    else:
        decaying, rest = state.engagement, state.fixed
        if timer.score == "total":
            rest += fit.points
        half_life = model.half_life_ms
    # the crossing of the lowest score that counts as reaching the bound
    crossing = _crossing(decaying, at_least(timer.bound) - rest, half_life)
    if crossing is None:
        return []
    # float rounding may put the exact crossing a millisecond either way
    at = state.as_of + crossing
    return [(at - 1, DECAY), (at, DECAY), (at + 1, DECAY)]


def _crossing(decaying: float, target: float, half_life_ms: int) -> int | None:
    """Milliseconds until `decaying * 2^(-t/half_life)` reaches `target`, if it ever does:
    a decaying score moves towards 0, so only a target between it and 0 is crossed."""
    if decaying == 0 or target == 0 or (target > 0) != (decaying > 0):
        return None
    ratio = decaying / target
    if ratio < 1:
        return None
    return math.ceil(half_life_ms * math.log2(ratio))
