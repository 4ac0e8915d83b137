"""Time-driven changes in the pure core: when a quiet lead changes, and what it publishes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.events import Event, EventType, ProfileKey
from leadscore.model import default_model, load_model
from leadscore.scoring.outputs import ScoreChanged, StageTransitioned
from leadscore.scoring.score import advance, score
from leadscore.scoring.timeline import next_change, situation
from tests.models import SIMPLE, simple_model

DAY = 86_400_000
LEAD = ProfileKey("lead", "L1")
B2B = default_model()
T0 = 20_000 * DAY


def ev(kind: EventType, event_id: str, at: int, **fields: object) -> Event:
    return Event(kind, event_id, at, "L1", None, **fields)  # type: ignore[arg-type]


def active_lead() -> list[Event]:
    """A qualified lead (fit 25) with a demo request and an inbound call: active."""
    profile = {"company": "Acme", "industry": "software", "job_title": "VP Sales"}
    return [
        ev(EventType.FORM, "f1", T0, form_id="demo-request", fields=profile),
        ev(
            EventType.CALL,
            "c1",
            T0 + 3_600_000,
            direction="INBOUND",
            answered=True,
            duration_s=300,
        ),
    ]


def test_an_active_lead_who_goes_quiet_becomes_long_term_at_the_due_time() -> None:
    lead = score(LEAD, None, active_lead(), B2B).state
    assert lead.stage == "active_lead"
    due = next_change(lead, B2B)
    assert due is not None
    # engagement ~55 (30 + 25, an hour apart) decays below 40 before 30 quiet days pass
    engagement = 30 * 2 ** (-3_600_000 / (14 * DAY)) + 25
    assert lead.engagement == pytest.approx(engagement)
    crossing = T0 + 3_600_000 + 14 * DAY * math.log2(engagement / 40)
    assert due.cause == "decay"
    assert due.at == pytest.approx(crossing, abs=2)

    assert advance(LEAD, lead, B2B, due.at - 1).outputs == []
    swept = advance(LEAD, lead, B2B, due.at)
    transition, change = swept.outputs
    assert isinstance(transition, StageTransitioned)
    assert isinstance(change, ScoreChanged)
    assert (transition.from_stage, transition.to_stage) == ("active_lead", "lead")
    assert transition.reason == "decay"
    assert transition.as_of == transition.occurred_at == due.at
    assert transition.inactive_for_ms == due.at - (T0 + 3_600_000)
    assert transition.cause_event_id == f"time:{due.at}"
    assert change.stage == "lead"
    assert change.engagement < 40
    assert [r.rule for r in change.reasons] == ["decay"]
    assert swept.state.as_of == due.at
    assert swept.state.last_activity == T0 + 3_600_000


def test_thirty_quiet_days_make_a_lead_long_term_for_inactivity() -> None:
    lead = score(LEAD, None, active_lead(), B2B).state
    swept = advance(LEAD, lead, B2B, T0 + 40 * DAY)
    transitions = [o for o in swept.outputs if isinstance(o, StageTransitioned)]
    assert [(t.from_stage, t.to_stage, t.reason) for t in transitions] == [
        ("active_lead", "lead", "decay"),
        ("lead", "long_term_lead", "inactivity"),
    ]
    quiet = transitions[1]
    assert quiet.as_of == T0 + 3_600_000 + 30 * DAY
    assert quiet.inactive_for_ms == 30 * DAY
    assert next_change(swept.state, B2B) is None  # nothing changes by waiting any more


def test_a_sweep_repeated_after_a_crash_emits_the_same_ids() -> None:
    lead = score(LEAD, None, active_lead(), B2B).state
    first = advance(LEAD, lead, B2B, T0 + 40 * DAY)
    again = advance(LEAD, lead, B2B, T0 + 40 * DAY)
    assert [o.event_id for o in first.outputs] == [o.event_id for o in again.outputs]
    assert first.state == again.state
    # a sweep that already happened changes nothing
    assert advance(LEAD, first.state, B2B, T0 + 40 * DAY).outputs == []
    other = advance(ProfileKey("lead", "L2"), lead, B2B, T0 + 40 * DAY)
    assert not {o.event_id for o in first.outputs} & {o.event_id for o in other.outputs}


def test_a_new_event_just_before_the_due_time_prevents_the_change() -> None:
    lead = score(LEAD, None, active_lead(), B2B).state
    due = next_change(lead, B2B)
    assert due is not None
    visit = ev(EventType.VISIT, "v1", due.at - 1, url="https://example.com/pricing")
    busy = score(LEAD, lead, [visit], B2B)
    assert not [o for o in busy.outputs if isinstance(o, StageTransitioned)]
    assert busy.state.stage == "active_lead"
    later = next_change(busy.state, B2B)
    assert later is not None
    assert later.at > due.at
    assert advance(LEAD, busy.state, B2B, due.at).outputs == []


def test_an_event_after_the_due_time_first_applies_the_change_that_came_due() -> None:
    """Whether the worker swept before the event arrived or not, the outputs are the same."""
    lead = score(LEAD, None, active_lead(), B2B).state
    visit = ev(EventType.VISIT, "v1", T0 + 35 * DAY, url="https://example.com/pricing")
    direct = score(LEAD, lead, [visit], B2B)
    swept = advance(LEAD, lead, B2B, T0 + 35 * DAY - 1)
    then = score(LEAD, swept.state, [visit], B2B)
    assert direct.outputs == swept.outputs + then.outputs
    assert direct.state == then.state
    assert direct.emitted_by[:4] == ["v1"] * 4  # two time-driven changes, each 2 outputs


def test_a_lead_with_nothing_that_time_changes_is_not_scheduled() -> None:
    visitor = score(LEAD, None, [ev(EventType.VISIT, "v1", T0, url="https://x/")], B2B).state
    assert visitor.stage == "visitor"
    assert next_change(visitor, B2B) is None


event_strategy = st.builds(
    lambda kind, i, at: ev(kind, f"e{i}", at),
    st.sampled_from(list(EventType)),
    st.integers(0, 10_000),
    st.integers(DAY, 120 * DAY),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(event_strategy, min_size=2, max_size=25, unique_by=lambda e: e.event_id),
    st.integers(0, 120 * DAY),
)
def test_when_the_worker_sweeps_changes_nothing(events: list[Event], sweep_at: int) -> None:
    """Events in order, with a sweep at any moment between them: the same outputs, ids
    and state as without the sweep."""
    model = simple_model()
    events = sorted(events, key=lambda e: e.occurred_at)
    before = [e for e in events if e.occurred_at <= sweep_at]
    after = [e for e in events if e.occurred_at > sweep_at]
    whole = score(LEAD, None, events, model)
    caught_up = advance(LEAD, whole.state, model, sweep_at)  # a no-op if events follow
    first = score(LEAD, None, before, model)
    swept = advance(LEAD, first.state, model, sweep_at)
    rest = score(LEAD, swept.state, after, model)
    assert whole.outputs + caught_up.outputs == first.outputs + swept.outputs + rest.outputs
    assert caught_up.state == rest.state


@settings(max_examples=200, deadline=None)
@given(st.lists(event_strategy, min_size=1, max_size=25, unique_by=lambda e: e.event_id))
def test_the_next_change_is_exact(events: list[Event]) -> None:
    """Nothing changes before the due time; at the due time something does."""
    model = load_model(SIMPLE)
    state = score(LEAD, None, events, model).state
    due = next_change(state, model)
    if due is None:
        assert situation(state, model, state.as_of + 3650 * DAY) == situation(state, model)
        return
    assert situation(state, model, due.at - 1) == situation(state, model)
    assert situation(state, model, due.at) != situation(state, model)
