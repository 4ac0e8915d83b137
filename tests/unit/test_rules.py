"""Engagement and fit rules: one example per condition kind, once, decay exemption, tags."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.events import Consent, Event, EventType, ProfileKey, Source
from leadscore.model import Model, default_model, parse_model
from leadscore.scoring.outputs import ScoreChanged, StageTransitioned
from leadscore.scoring.score import score
from leadscore.scoring.timeline import lead_facts

DAY = 86_400_000
LEAD = ProfileKey("lead", "L1")


def model_with(
    rules: list[dict[str, Any]],
    fit: list[dict[str, Any]] | None = None,
    lists: dict[str, list[str]] | None = None,
) -> Model:
    return parse_model(
        {
            "version": "t",
            "engagement": {"half_life_days": 1, "rules": rules},
            "fit": {"lists": lists or {}, "rules": fit or []},
            "grades": {"fit": {"A": 3, "B": 2, "C": 1}, "engagement": {"1": 3, "2": 2, "3": 1}},
            "stages": [{"name": "visitor"}, {"name": "out", "when": {"has_tag": "bad"}}],
        }
    )


def ev(kind: EventType, **fields: Any) -> Event:
    fields.setdefault("occurred_at", 10 * DAY)
    return Event(
        kind, fields.pop("event_id", "e1"), fields.pop("occurred_at"), "L1", None, **fields
    )


def points(model: Model, *events: Event) -> float:
    state = score(LEAD, None, events, model).state
    return state.engagement + state.fixed


@pytest.mark.parametrize(
    ("when", "hit", "miss"),
    [
        ({"type": "visit"}, ev(EventType.VISIT), ev(EventType.CLICK)),
        ({"type": ["form", "call"]}, ev(EventType.CALL), ev(EventType.VISIT)),
        (
            {"url": "*/pricing*"},
            ev(EventType.VISIT, url="https://x.com/Pricing/team"),
            ev(EventType.VISIT, url="https://x.com/blog"),
        ),
        (
            {"url": ["*/a", "*/b"]},
            ev(EventType.VISIT, url="https://x.com/b"),
            ev(EventType.VISIT, url=None),
        ),
        (
            {"url": {"regex": r"/docs/\d+"}},
            ev(EventType.VISIT, url="https://x.com/docs/42"),
            ev(EventType.VISIT, url="https://x.com/docs/intro"),
        ),
        (
            {"form_id": ["demo", "quote"]},
            ev(EventType.FORM, form_id="quote"),
            ev(EventType.FORM, form_id="newsletter"),
        ),
        (
            {"direction": "INBOUND"},
            ev(EventType.CALL, direction="INBOUND"),
            ev(EventType.CALL, direction="OUTBOUND"),
        ),
        ({"answered": True}, ev(EventType.CALL, answered=True), ev(EventType.CALL, answered=False)),
        (
            {"min_duration_s": 60},
            ev(EventType.CALL, duration_s=60),
            ev(EventType.CALL, duration_s=59),
        ),
        (
            {"min_duration_ms": 30000},
            ev(EventType.VISIT, duration_ms=45000),
            ev(EventType.VISIT, duration_ms=None),
        ),
        (
            {"outcome": "sale"},
            ev(EventType.CALL, outcome="sale"),
            ev(EventType.CALL, outcome="voicemail"),
        ),
        (
            {"channel": ["paid_search", "tv"]},
            ev(EventType.CLICK, source=Source("tv")),
            ev(EventType.CLICK, source=None),
        ),
        (
            {"campaign": "spring-*"},
            ev(EventType.CLICK, source=Source("paid", "spring-24")),
            ev(EventType.CLICK, source=Source("paid", "autumn")),
        ),
        (
            {"device": "MOBILE"},
            ev(EventType.VISIT, device="MOBILE"),
            ev(EventType.VISIT, device="DESKTOP"),
        ),
        (
            {"user_agent": {"regex": "(?i)bot"}},
            ev(EventType.CLICK, user_agent="GoogleBot/2"),
            ev(EventType.CLICK, user_agent="Mozilla/5.0"),
        ),
        (
            {"min_fill_ms": 20000},
            ev(EventType.FORM, fill_duration_ms=30000),
            ev(EventType.FORM, fill_duration_ms=3000),
        ),
        (
            {"max_fill_ms": 5000},
            ev(EventType.FORM, fill_duration_ms=3000),
            ev(EventType.FORM, fill_duration_ms=None),
        ),
        (
            {"completed_by": "AGENT"},
            ev(EventType.FORM, completed_by="AGENT"),
            ev(EventType.FORM, completed_by="SELF"),
        ),
        (
            {"trait": {"plan": "enterprise*"}},
            ev(EventType.VISIT, traits={"plan": "Enterprise"}),
            ev(EventType.VISIT, traits={}),
        ),
        (
            {"field": {"topic": ["billing", "pricing"]}},
            ev(EventType.FORM, fields={"topic": "pricing"}),
            ev(EventType.FORM, fields={}),
        ),
    ],
)
def test_each_condition_kind(when: dict[str, Any], hit: Event, miss: Event) -> None:
    model = model_with([{"name": "r", "when": when, "points": 1}])
    assert points(model, hit) == 1
    assert points(model, miss) == 0


def test_all_conditions_of_a_rule_must_hold_and_several_rules_may_match() -> None:
    model = model_with(
        [
            {"name": "call", "when": {"type": "call"}, "points": 1},
            {
                "name": "good_call",
                "when": {"type": "call", "answered": True, "min_duration_s": 60},
                "points": 5,
            },
        ]
    )
    assert points(model, ev(EventType.CALL, answered=True, duration_s=300)) == 6
    assert points(model, ev(EventType.CALL, answered=True, duration_s=10)) == 1


def test_negative_points_and_tags_and_tag_conditions() -> None:
    model = model_with(
        [
            {"name": "careers", "when": {"url": "*/careers*"}, "points": -5, "tags": ["bad"]},
            {"name": "visit", "when": {"type": "visit", "lacks_tag": "bad"}, "points": 2},
            {"name": "flagged", "when": {"type": "visit", "has_tag": ["bad"]}, "points": -1},
        ]
    )
    result = score(
        LEAD,
        None,
        [
            ev(EventType.VISIT, event_id="a", url="https://x.com/careers"),
            ev(EventType.VISIT, event_id="b", url="https://x.com/home"),
        ],
        model,
    )
    # conditions see the tags the lead had before the event: the careers visit also earns
    # `visit` (+2); the next visit is already tagged: `flagged` (-1) instead of `visit`
    assert result.state.tags == {"bad"}
    assert result.state.engagement == pytest.approx(-5 + 2 - 1)
    assert result.state.stage == "out"


def test_a_once_rule_counts_once_per_lead() -> None:
    model = model_with(
        [{"name": "w", "when": {"form_id": "whitepaper"}, "points": 10, "once": True}]
    )
    forms = [ev(EventType.FORM, event_id=f"f{i}", form_id="whitepaper") for i in range(3)]
    assert points(model, *forms) == 10


def test_a_rule_exempt_from_decay_keeps_its_points() -> None:
    model = model_with(
        [
            {"name": "sale", "when": {"outcome": "sale"}, "points": 50, "decay": False},
            {"name": "visit", "when": {"type": "visit"}, "points": 8},
        ]
    )
    later = score(
        LEAD,
        None,
        [
            ev(EventType.CALL, event_id="c", outcome="sale", occurred_at=DAY),
            ev(EventType.VISIT, event_id="v", occurred_at=DAY),
            ev(EventType.VISIT, event_id="w", occurred_at=4 * DAY),  # three half-lives later
        ],
        model,
    )
    assert later.state.fixed == 50
    assert later.state.engagement == pytest.approx(8 / 8 + 8)
    change = [o for o in later.outputs if isinstance(o, ScoreChanged)][-1]
    assert {r.rule: r.points for r in change.reasons} == pytest.approx(
        {"visit": 8.0, "decay": -7.0}
    )


@pytest.mark.parametrize(
    ("when", "attributes", "expected"),
    [
        ({"attribute": "company", "exists": True}, {"company": "Acme"}, 1),
        ({"attribute": "company", "exists": False}, {"company": "Acme"}, 0),
        ({"attribute": "country", "equals": "DE"}, {"country": "de"}, 1),
        ({"attribute": "country", "in": ["DE", "AT"]}, {"country": "FR"}, 0),
        ({"attribute": "email_domain", "in_list": "rivals"}, {"email": "x@Rival.com"}, 1),
        ({"attribute": "title", "regex": "(?i)^vp"}, {"title": "VP Sales"}, 1),
        ({"attribute": "email_domain", "matches": "*.edu"}, {"email": "s@uni.edu"}, 1),
        ({"attribute": "employees", "gte": 50}, {"employees": "50"}, 1),
        ({"attribute": "employees", "lt": 50}, {"employees": "many"}, 0),
        ({"attribute": "revenue", "gt": 1e6}, {"revenue": "2500000"}, 1),
        ({"attribute": "revenue", "lte": 1e6}, {}, 0),
    ],
)
def test_each_fit_test(when: dict[str, Any], attributes: dict[str, str], expected: int) -> None:
    model = model_with(
        [{"name": "any", "when": {"type": "visit"}, "points": 0}],
        fit=[{"name": "f", "when": when, "points": 1}],
        lists={"rivals": ["rival.com"]},
    )
    assert model.fit(attributes).points == expected


def test_fit_follows_the_attributes_and_its_tags_can_disqualify() -> None:
    model = default_model()
    events = [
        ev(
            EventType.FORM,
            event_id="f1",
            form_id="demo-request",
            consent=Consent(True, True),
            fields={
                "email": "ann@acme.io",
                "company": "Acme",
                "industry": "software",
                "job_title": "VP Engineering",
                "company_size": "200",
            },
        ),
    ]
    first = score(LEAD, None, events, model)
    assert first.state.stage == "lead"  # 30 demo + 30 fit
    moved = score(
        LEAD,
        first.state,
        [
            ev(
                EventType.FORM,
                event_id="f2",
                form_id="newsletter",
                occurred_at=10 * DAY + 1,
                fields={"email": "ann@rivalsoft.com"},
            )
        ],
        model,
    )
    transition = next(o for o in moved.outputs if isinstance(o, StageTransitioned))
    assert (transition.from_stage, transition.to_stage, transition.reason) == (
        "lead",
        "disqualified",
        "progressed",
    )
    change = next(o for o in moved.outputs if isinstance(o, ScoreChanged))
    reasons = {r.rule: r.points for r in change.reasons}
    assert reasons["fit"] == pytest.approx(-50)
    assert reasons["newsletter"] == pytest.approx(3)


def test_speed_to_lead_runs_from_the_first_request_to_the_first_response() -> None:
    model = default_model()
    t0 = 10 * DAY
    result = score(
        LEAD,
        None,
        [
            ev(EventType.VISIT, event_id="v", occurred_at=t0 - 5000),
            ev(EventType.CALL, event_id="out0", occurred_at=t0 - 1000, direction="OUTBOUND"),
            ev(EventType.FORM, event_id="f", occurred_at=t0, form_id="demo-request"),
            ev(
                EventType.CALL,
                event_id="out1",
                occurred_at=t0 + 90_000,
                direction="OUTBOUND",
                answered=True,
                duration_s=300,
            ),
            ev(EventType.CALL, event_id="out2", occurred_at=t0 + 200_000, direction="OUTBOUND"),
        ],
        model,
    )
    # a cold call before the request does not count; the first call after it does
    assert result.state.speed_to_lead_ms == 90_000
    assert result.speed_to_lead_ms == 90_000
    changes = [o for o in result.outputs if isinstance(o, ScoreChanged)]
    assert [c.speed_to_lead_ms for c in changes][-1] == 90_000
    assert changes[0].speed_to_lead_ms is None
    # a late, earlier request moves the start back; the response stays
    late = score(
        LEAD,
        result.state,
        [ev(EventType.CALL, event_id="in", occurred_at=t0 - 500, direction="INBOUND")],
        model,
    )
    assert late.state.speed_to_lead_ms == 90_500
    assert late.speed_to_lead_ms is None  # measured before: not observed again


def test_outputs_carry_the_tags_and_a_new_tag_is_published() -> None:
    model = default_model()
    first = score(LEAD, None, [ev(EventType.VISIT, event_id="v", url="https://x.com/")], model)
    tagged = score(
        LEAD,
        first.state,
        [ev(EventType.VISIT, event_id="c", url="https://x.com/careers", occurred_at=10 * DAY + 1)],
        model,
    )
    change = next(o for o in tagged.outputs if isinstance(o, ScoreChanged))
    assert change.tags == ("job_seeker",)
    assert change.stage == "disqualified"


def test_a_rule_earns_at_most_its_cap_per_window() -> None:
    model = model_with(
        [
            {
                "name": "visit",
                "when": {"type": "visit"},
                "points": 4,
                "cap": {"points": 10, "per": "1d"},
                "decay": False,
            }
        ]
    )
    day = [ev(EventType.VISIT, event_id=f"a{i}", occurred_at=10 * DAY + i) for i in range(5)]
    next_day = [ev(EventType.VISIT, event_id=f"b{i}", occurred_at=11 * DAY + i) for i in range(2)]
    result = score(LEAD, None, [*day, *next_day], model)
    assert result.state.fixed == 10 + 8  # 4 + 4 + 2 on day 10, then 4 + 4
    # a late event into the previous window still respects that window's cap
    late = score(
        LEAD, result.state, [ev(EventType.VISIT, event_id="c", occurred_at=10 * DAY)], model
    )
    assert late.state.fixed == 18


def test_the_engagement_total_never_exceeds_the_model_cap() -> None:
    model = dataclasses.replace(
        model_with([{"name": "call", "when": {"type": "call"}, "points": 40}]),
        engagement_cap=100.0,
    )
    calls = [ev(EventType.CALL, event_id=f"c{i}", occurred_at=10 * DAY + i) for i in range(5)]
    result = score(LEAD, None, calls, model)
    # the state keeps the sum uncapped; the cap applies when it is read
    assert result.state.engagement == pytest.approx(200.0)
    assert lead_facts(result.state, model)[0].engagement == 100.0
    assert all(o.engagement <= 100.0 + 1e-9 for o in result.outputs)


capped_events = st.lists(
    st.builds(
        lambda i, at, kind: ev(kind, event_id=f"e{i}", occurred_at=at),
        st.integers(0, 10_000),
        st.integers(10 * DAY, 10 * DAY + 3 * 3_600_000),
        st.sampled_from([EventType.VISIT, EventType.CLICK]),
    ),
    max_size=40,
    unique_by=lambda e: e.event_id,
)


@settings(max_examples=200, deadline=None)
@given(capped_events)
def test_no_cap_is_ever_exceeded(events: list[Event]) -> None:
    model = dataclasses.replace(
        model_with(
            [
                {
                    "name": "visit",
                    "when": {"type": "visit"},
                    "points": 3,
                    "cap": {"points": 7, "per": "1h"},
                    "decay": False,
                },
                {"name": "click", "when": {"type": "click"}, "points": 5, "decay": False},
            ]
        ),
        engagement_cap=60.0,
    )
    result = score(LEAD, None, events, model)
    for used in result.state.caps.values():
        assert all(u <= 7 for u in used.values())
    hours = {e.occurred_at // 3_600_000 for e in events if e.type is EventType.VISIT}
    visits = sum(
        r.points
        for o in result.outputs
        if isinstance(o, ScoreChanged)
        for r in o.reasons
        if r.rule == "visit"
    )
    assert visits <= 7 * len(hours) + 1e-9
    assert lead_facts(result.state, model)[0].engagement <= 60.0
    assert all(o.engagement <= 60.0 for o in result.outputs if isinstance(o, ScoreChanged))


def test_the_model_says_what_starts_and_stops_speed_to_lead() -> None:
    base = model_with([{"name": "any", "when": {"type": "visit"}, "points": 0}])
    document = {
        "version": "t",
        "engagement": {
            "half_life_days": 1,
            "rules": [{"name": "any", "when": {"type": "visit"}, "points": 0}],
        },
        "grades": {"fit": {"A": 3, "B": 2, "C": 1}, "engagement": {"1": 3, "2": 2, "3": 1}},
        "stages": [{"name": "visitor"}],
        "speed_to_lead": {
            "requests": [{"type": "form", "form_id": "demo"}],
            "responses": [{"type": "call", "answered": True}],
        },
    }
    model = parse_model(document)
    events = [
        ev(EventType.FORM, event_id="n", form_id="newsletter", occurred_at=DAY),
        ev(EventType.FORM, event_id="d", form_id="demo", occurred_at=2 * DAY),
        ev(EventType.CALL, event_id="u", answered=False, occurred_at=2 * DAY + 10),
        ev(EventType.CALL, event_id="a", answered=True, occurred_at=2 * DAY + 99),
    ]
    assert score(LEAD, None, events, model).state.speed_to_lead_ms == 99
    assert score(LEAD, None, events, base).state.speed_to_lead_ms is None  # no outbound call


def test_a_repeated_request_within_the_window_is_intent() -> None:
    model = model_with(
        [
            {"name": "demo", "when": {"form_id": "demo"}, "points": 10, "decay": False},
            {
                "name": "asked_again",
                "when": {"form_id": "demo"},
                "repeat_within": "7d",
                "points": 5,
                "decay": False,
            },
        ]
    )
    forms = [
        ev(EventType.FORM, event_id="d1", form_id="demo", occurred_at=10 * DAY),
        ev(EventType.FORM, event_id="d1", form_id="demo", occurred_at=10 * DAY),  # redelivery
        ev(EventType.FORM, event_id="d2", form_id="demo", occurred_at=12 * DAY),
        ev(EventType.FORM, event_id="d3", form_id="demo", occurred_at=30 * DAY),
    ]
    result = score(LEAD, None, forms, model)
    assert result.state.fixed == 10 + (10 + 5) + 10
    assert result.state.contributions["asked_again"] == (5.0, 5.0)


def test_form_fill_effort_and_who_completed_it_can_be_scored() -> None:
    model = default_model()
    careful = ev(
        EventType.FORM,
        event_id="f1",
        form_id="demo-request",
        completed_by="SELF",
        fill_duration_ms=90_000,
    )
    hasty = ev(
        EventType.FORM,
        event_id="f2",
        form_id="demo-request",
        completed_by="AGENT",
        fill_duration_ms=90_000,
    )
    assert score(LEAD, None, [careful], model).state.contributions["careful_request"][0] == 5
    assert "careful_request" not in score(LEAD, None, [hasty], model).state.contributions


@settings(max_examples=200, deadline=None)
@given(capped_events, st.randoms())
def test_capped_engagement_does_not_depend_on_the_order_within_the_kept_windows(
    events: list[Event], rng: object
) -> None:
    """Capped points count from their window's start, so the order of a window's events
    does not matter (events span at most the current and the previous window here)."""
    model = model_with(
        [
            {
                "name": "visit",
                "when": {"type": "visit"},
                "points": 3,
                "cap": {"points": 7, "per": "2h"},
            },
            {"name": "click", "when": {"type": "click"}, "points": 5},
        ]
    )
    in_two_windows = [e for e in events if e.occurred_at < 10 * DAY + 4 * 3_600_000]
    shuffled = list(in_two_windows)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    a = score(LEAD, None, in_two_windows, model).state
    b = score(LEAD, None, shuffled, model).state
    assert a.engagement == pytest.approx(b.engagement, rel=1e-9, abs=1e-9)
