"""The pure scoring core: decay in event time, redeliveries, outputs and their reasons."""

from __future__ import annotations

import dataclasses
import math
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.events import Consent, Event, EventType, ProfileKey
from leadscore.model import parse_model
from leadscore.model.conditions import at_least
from leadscore.scoring.engagement import decay_factor
from leadscore.scoring.outputs import ScoreChanged, StageTransitioned, output_id
from leadscore.scoring.score import score
from leadscore.scoring.state import LeadState
from tests.models import simple_model

MODEL = simple_model()
DAY = 86_400_000
HALF_LIFE = MODEL.half_life_ms
LEAD = ProfileKey("lead", "L1")


def ev(kind: EventType, event_id: str, at: int, **fields: object) -> Event:
    return Event(kind, event_id, at, "L1", None, **fields)  # type: ignore[arg-type]


def test_decay_halves_per_half_life() -> None:
    assert decay_factor(HALF_LIFE, HALF_LIFE) == pytest.approx(0.5)
    assert decay_factor(0, HALF_LIFE) == 1.0
    assert decay_factor(-5, HALF_LIFE) == 1.0
    assert 8.0 * decay_factor(3 * HALF_LIFE, HALF_LIFE) == pytest.approx(1.0)


def test_engagement_is_the_decayed_sum_of_points() -> None:
    t0 = 1_000 * DAY
    events = [ev(EventType.FORM, "f", t0), ev(EventType.CALL, "c", t0 + HALF_LIFE)]
    result = score(LEAD, None, events, MODEL)
    assert result.state.engagement == pytest.approx(15 * 0.5 + 20)
    assert result.state.as_of == t0 + HALF_LIFE


def test_a_late_event_is_decayed_to_the_leads_clock_and_does_not_move_it_back() -> None:
    t0 = 1_000 * DAY
    on_time = score(LEAD, None, [ev(EventType.CALL, "c", t0 + HALF_LIFE)], MODEL).state
    late = score(LEAD, on_time, [ev(EventType.FORM, "f", t0)], MODEL)
    assert late.state.as_of == t0 + HALF_LIFE
    assert late.state.engagement == pytest.approx(20 + 15 * 0.5)


def test_the_first_event_yields_a_transition_from_nothing_then_a_score() -> None:
    result = score(LEAD, None, [ev(EventType.VISIT, "v", 5 * DAY)], MODEL)
    transition, change = result.outputs
    assert isinstance(transition, StageTransitioned)
    assert (transition.from_stage, transition.to_stage) == (None, "visitor")
    assert transition.reason == "first_event"
    assert transition.time_in_previous_stage_ms is None
    assert isinstance(change, ScoreChanged)
    assert (change.total, change.previous_total, change.delta) == (1.0, 0.0, 1.0)
    assert change.grade == "D4"
    assert change.contact_allowed is False
    assert transition.event_id != change.event_id


def test_output_ids_are_a_function_of_the_cause() -> None:
    events = [ev(EventType.FORM, "f1", 5 * DAY), ev(EventType.CALL, "c1", 6 * DAY)]
    first = score(LEAD, None, events, MODEL)
    again = score(LEAD, None, events, MODEL)
    assert [o.event_id for o in first.outputs] == [o.event_id for o in again.outputs]
    other = score(ProfileKey("lead", "L2"), None, events, MODEL)
    assert not {o.event_id for o in first.outputs} & {o.event_id for o in other.outputs}


@given(st.text(max_size=40), st.text(min_size=1, max_size=80), st.integers(0, 3))
def test_output_ids_are_the_uuid5_of_their_name(lead: str, cause: str, index: int) -> None:
    """Ids never change between versions (consumers deduplicate by them): the same as
    `uuid.uuid5` of the name in our namespace, whatever the characters."""
    profile = ProfileKey("lead", lead)
    name = f"lead/{lead}/{cause}/score_changed/{index}"
    expected = str(uuid.uuid5(uuid.UUID("6c2b1f0e-5d1a-4d8e-9a41-2f1c8c3e7b55"), name))
    assert output_id(profile, cause, "score_changed", index) == expected


def test_crossing_a_threshold_moves_the_stage_and_decay_moves_it_back() -> None:
    t0 = 100 * DAY
    up = score(LEAD, None, [ev(EventType.CALL, "c1", t0), ev(EventType.CALL, "c2", t0 + 1)], MODEL)
    assert up.state.stage == "lead"  # 40 points
    transitions = [o for o in up.outputs if isinstance(o, StageTransitioned)]
    assert [(t.from_stage, t.to_stage) for t in transitions] == [
        (None, "contact"),
        ("contact", "lead"),
    ]
    assert transitions[1].time_in_previous_stage_ms == 1
    # two half-lives later the 40 points are 10: on the way the lead fell below 35 (lead ->
    # contact) and below 15 (contact -> visitor), each at the time decay took it there,
    # before the visit is folded in
    down = score(LEAD, up.state, [ev(EventType.VISIT, "v", t0 + 2 * HALF_LIFE)], MODEL)
    transitions = [o for o in down.outputs if isinstance(o, StageTransitioned)]
    assert [(t.from_stage, t.to_stage, t.reason) for t in transitions] == [
        ("lead", "contact", "decay"),
        ("contact", "visitor", "decay"),
    ]
    # at the millisecond the total fell below 35 (less the tolerance of a billionth that
    # makes an exact crossing order-independent), not later
    crossed = transitions[0]
    assert crossed.total < at_least(35) <= crossed.total / decay_factor(1, HALF_LIFE)
    assert crossed.as_of == pytest.approx(t0 + HALF_LIFE * math.log2(40 / at_least(35)), abs=2)
    assert transitions[1].engagement < 15
    assert transitions[0].cause_event_id.startswith("time:")
    assert down.state.stage == "visitor"


def test_reasons_add_up_to_the_delta_and_show_decay() -> None:
    t0 = 100 * DAY
    first = score(LEAD, None, [ev(EventType.CALL, "c1", t0)], MODEL)
    later = score(
        LEAD,
        first.state,
        [ev(EventType.FORM, "f1", t0 + HALF_LIFE, fields={"company": "Acme", "industry": "x"})],
        MODEL,
    )
    # decay took the lead below 15 (contact -> visitor) before the form: a time-driven
    # change published the first part of the decay, the form's change the rest
    on_time, on_form = [o for o in later.outputs if isinstance(o, ScoreChanged)]
    assert on_time.cause_event_id.startswith("time:")
    assert on_form.cause_event_id == "f1"
    assert on_time.previous_total == pytest.approx(20.0)
    assert [(r.rule, r.points) for r in on_time.reasons] == [("decay", on_time.delta)]
    reasons = {r.rule: r.points for r in on_form.reasons}
    assert reasons == pytest.approx({"form": 15.0, "fit": 10.0, "decay": -10.0 - on_time.delta})
    assert sum(reasons.values()) == pytest.approx(on_form.delta)


def test_a_redelivered_event_id_changes_nothing() -> None:
    first = score(LEAD, None, [ev(EventType.FORM, "f1", 5 * DAY)], MODEL)
    again = score(LEAD, first.state, [ev(EventType.FORM, "f1", 5 * DAY)], MODEL)
    assert again.duplicates == 1
    assert again.outputs == []
    assert again.state == first.state


def test_the_event_id_memory_is_bounded() -> None:
    events = [ev(EventType.VISIT, f"v{i}", DAY + i) for i in range(50)]
    result = score(LEAD, None, events, MODEL, memory=10)
    assert len(result.state.recent) == 10
    # the last ten are remembered, the first one is forgotten
    assert score(LEAD, result.state, [events[-1]], MODEL, memory=10).duplicates == 1
    assert score(LEAD, result.state, [events[0]], MODEL, memory=10).duplicates == 0


def test_the_latest_attribute_value_wins_by_event_time() -> None:
    t0 = 10 * DAY
    events = [
        ev(EventType.FORM, "new", t0 + 1000, fields={"company": "New Co"}),
        ev(EventType.FORM, "old", t0, fields={"company": "Old Co", "job_title": "CTO"}),
    ]
    state = score(LEAD, None, events, MODEL).state
    assert state.attribute_values() == {"company": "New Co", "job_title": "CTO"}


def test_consent_is_the_latest_and_its_change_is_published() -> None:
    t0 = 10 * DAY
    yes = score(LEAD, None, [ev(EventType.FORM, "f1", t0, consent=Consent(True, True))], MODEL)
    assert next(o for o in yes.outputs if isinstance(o, ScoreChanged)).contact_allowed
    # a visit with no points change would still be published: consent withdrawn
    no = score(
        LEAD,
        yes.state,
        [ev(EventType.FORM, "f2", t0, consent=Consent(False, False))],
        dataclasses.replace(MODEL, rules=()),
    )
    change = next(o for o in no.outputs if isinstance(o, ScoreChanged))
    assert change.contact_allowed is False
    assert change.delta == pytest.approx(0.0)


def test_the_input_state_is_not_modified() -> None:
    first = score(LEAD, None, [ev(EventType.FORM, "f1", 5 * DAY)], MODEL).state
    snapshot = dataclasses.replace(
        first,
        recent=list(first.recent),
        pending=dict(first.pending),
        attributes=dict(first.attributes),
    )
    score(LEAD, first, [ev(EventType.CALL, "c1", 6 * DAY)], MODEL)
    assert first == snapshot


event_strategy = st.builds(
    lambda kind, i, at: ev(kind, f"e{i}", at),
    st.sampled_from(list(EventType)),
    st.integers(0, 10_000),
    st.integers(DAY, 200 * DAY),
)


ONCE_MODEL = parse_model(
    {
        "version": "once",
        "engagement": {
            "half_life_days": 14,
            "rules": [
                {"name": "visit", "when": {"type": "visit"}, "points": 1},
                {"name": "click", "when": {"type": "click"}, "points": -2},
                {"name": "first_form", "when": {"type": "form"}, "points": 15, "once": True},
                {"name": "call", "when": {"type": "call"}, "points": 20, "decay": False},
            ],
        },
        "grades": {"fit": {"A": 3, "B": 2, "C": 1}, "engagement": {"1": 3, "2": 2, "3": 1}},
        "stages": [{"name": "visitor"}],
    }
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(event_strategy, max_size=30, unique_by=lambda e: e.event_id),
    st.randoms(),
    st.sampled_from([MODEL, ONCE_MODEL]),
)
def test_engagement_does_not_depend_on_the_order_of_events(
    events: list[Event], rng: object, model: object
) -> None:
    """Without caps: a capped window keeps whichever events came first."""
    shuffled = list(events)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    a = score(LEAD, None, events, model).state  # type: ignore[arg-type]
    b = score(LEAD, None, shuffled, model).state  # type: ignore[arg-type]
    assert a.fixed == pytest.approx(b.fixed)
    assert a.as_of == b.as_of
    assert a.engagement == pytest.approx(b.engagement, rel=1e-9, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.lists(event_strategy, min_size=1, max_size=30, unique_by=lambda e: e.event_id))
def test_redelivering_every_event_changes_nothing(events: list[Event]) -> None:
    first = score(LEAD, None, events, MODEL)
    again = score(LEAD, first.state, events, MODEL)
    assert again.state == first.state
    assert again.outputs == []


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1e6), st.integers(0, 10**12))
def test_decay_never_increases_a_score(points: float, later: int) -> None:
    assert points * decay_factor(later, HALF_LIFE) <= points


def test_an_empty_state_round_trips_through_the_store_encoding() -> None:
    from leadscore.state.encoding import decode_state, encode_state

    state = score(
        LEAD,
        None,
        [
            ev(
                EventType.FORM,
                "f1",
                5 * DAY,
                consent=Consent(True, False),
                fields={"company": "Acme"},
            )
        ],
        MODEL,
    ).state
    assert decode_state(encode_state(state)) == state
    assert decode_state(encode_state(LeadState())) == LeadState()
