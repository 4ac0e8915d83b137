"""Fold a profile's events into its state and derive the outputs they cause.

Pure: no I/O, no clock. The same state, events and model always give the same result;
`fold.py` folds one event, `diff.py` compares a state with what was last published.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from leadscore.events import Event, ProfileKey
from leadscore.model import Model
from leadscore.scoring.diff import changes, record_published
from leadscore.scoring.fold import apply, move_clock
from leadscore.scoring.outputs import Cause, Output
from leadscore.scoring.state import LeadState, event_digest
from leadscore.scoring.timeline import next_change

DEFAULT_EVENT_MEMORY = 100
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
    model = model.for_profile(profile)
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
        apply(new, event, model, int.from_bytes(digest[:4], "big"))
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
    model = model.for_profile(profile)
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
        move_clock(state, model, due.at)
        outputs = _outputs(profile, state, Cause.due(due.at, due.cause), model)
        result.outputs += outputs
        result.emitted_by += [by] * len(outputs)


def _outputs(profile: ProfileKey, state: LeadState, cause: Cause, model: Model) -> list[Output]:
    """Emit what changed since the last output, and record it as published."""
    diff = changes(profile, state, cause, model)
    record_published(state, diff)
    return diff.outputs


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
