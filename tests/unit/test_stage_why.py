"""Why a lead is in its stage: each stage condition read with the lead's value and the
bound, and the explanation every StageTransitioned carries."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from leadscore.durations import parse_duration_ms
from leadscore.events import Event, EventType, ProfileKey
from leadscore.model import Stage, default_model
from leadscore.model.conditions import LeadFacts, StageCondition, Where, stage_predicates
from leadscore.model.readable import figure, span_text
from leadscore.scoring.outputs import StageTransitioned
from leadscore.scoring.score import advance, score

DAY = 86_400_000
HOUR = 3_600_000
NOW = 20_000 * DAY
LEAD = ProfileKey("lead", "L1")
B2B = default_model()


def facts(**known: Any) -> LeadFacts:
    values: dict[str, Any] = {
        "total": 0.0,
        "fit": 0.0,
        "engagement": 0.0,
        "tags": frozenset(),
        "counts": {},
        "visit_times": (),
        "last_activity": NOW,
        "now": NOW,
        "categories": {},
    }
    return LeadFacts(**{**values, **known})


def read(when: dict[str, Any], lead: LeadFacts) -> list[str]:
    """How each condition of a `when:` reads for the lead (whether it holds or not)."""
    conditions = stage_predicates(when, Where("m.yaml"), lambda v, _: parse_duration_ms(v))
    return [c.describe(lead) for c in conditions]


@pytest.mark.parametrize(
    ("when", "lead", "reads"),
    [
        ({"min_total": 40}, facts(total=41.5), ["total 41.5 >= 40"]),
        ({"max_total": 20}, facts(total=12.25), ["total 12.2 < 20"]),
        ({"min_fit": 10}, facts(fit=15.0), ["fit 15 >= 10"]),
        ({"max_fit": 5}, facts(fit=0.0), ["fit 0 < 5"]),
        ({"min_engagement": 40}, facts(engagement=40.04), ["engagement 40.04 >= 40"]),
        ({"max_engagement": 12.5}, facts(engagement=3.0), ["engagement 3 < 12.5"]),
        (
            {"min_category": {"analytics": 15}},
            facts(categories={"analytics": 21.37}),
            ["category analytics 21.4 >= 15"],
        ),
        ({"max_category": {"analytics": 5}}, facts(), ["category analytics 0 < 5"]),
        ({"has_tag": "customer"}, facts(tags=frozenset({"customer"})), ["has tag customer"]),
        (
            {"has_tag": ["competitor", "student", "bot"]},
            facts(tags=frozenset({"student", "bot", "vip"})),
            ["has tags bot, student"],
        ),
        ({"lacks_tag": "bot"}, facts(), ["lacks tag bot"]),
        ({"lacks_tag": ["bot", "student"]}, facts(), ["lacks tags bot, student"]),
        ({"min_requests": 1}, facts(counts={"requests": 3}), ["requests 3 >= 1"]),
        ({"min_forms": 1}, facts(counts={"forms": 2}), ["forms 2 >= 1"]),
        ({"min_answered_calls": 1}, facts(counts={"answered_calls": 1}), ["answered calls 1 >= 1"]),
        ({"min_visits": 3}, facts(visit_times=(1, 2, 3, 4)), ["visits 4 >= 3"]),
        (
            {"min_visits": {"count": 2, "within": "7d"}},
            facts(visit_times=(NOW - 9 * DAY, NOW - 2 * DAY, NOW - HOUR)),
            ["visits within 7d 2 >= 2"],
        ),
        (
            {"inactive_for": "30d"},
            facts(last_activity=NOW - 31 * DAY),
            ["inactive for 31d >= 30d"],
        ),
        (
            {"active_within": "30d"},
            facts(last_activity=NOW - 5 * HOUR // 2),
            ["last active 2.5h ago <= 30d"],
        ),
        (
            {"min_requests": 1, "min_fit": 15},
            facts(counts={"requests": 1}, fit=25.0),
            ["requests 1 >= 1", "fit 25 >= 15"],
        ),
    ],
)
def test_every_condition_kind_reads_with_the_leads_value_and_the_bound(
    when: dict[str, Any], lead: LeadFacts, reads: list[str]
) -> None:
    assert read(when, lead) == reads


def test_a_score_shows_more_digits_only_when_one_would_hide_the_side_of_the_bound() -> None:
    assert figure(41.5, 40) == "41.5"
    assert figure(40.04, 40) == "40.04"
    assert figure(39.96, 40) == "39.96"
    assert figure(40.0, 40) == "40"
    assert figure(-0.01, 10) == "0"
    assert figure(1e-9, 0) == "1e-09"


def test_durations_read_in_the_units_of_model_files() -> None:
    spans = (30 * DAY, 5 * HOUR // 2, 45 * 60_000, 30_000, 500, 0)
    assert [span_text(ms) for ms in spans] == ["30d", "2.5h", "45m", "30s", "500ms", "0s"]


def test_why_a_stage_holds_says_its_conditions_or_why_it_needs_none() -> None:
    visitor, contact, lead = B2B.stages[:3]
    qualified = facts(counts={"requests": 1}, fit=25.0)
    assert lead.why(qualified) == (
        ("requests 1 >= 1", "fit 25 >= 15"),
        "requests 1 >= 1 and fit 25 >= 15",
    )
    assert visitor.why(facts()) == (
        (),
        "no conditions (the first stage): no later stage's conditions hold",
    )
    # `lead` keeps a lead whose fit fell below 15: kept, and what still holds
    assert B2B.stage(facts(counts={"requests": 1}, fit=5.0), "lead") is lead
    assert lead.why(facts(counts={"requests": 1}, fit=5.0)) == (
        ("requests 1 >= 1",),
        "kept (keep: reached before): no later stage's conditions hold; still requests 1 >= 1",
    )
    assert contact.why(facts(counts={"requests": 1})) == (
        ("requests 1 >= 1",),
        "requests 1 >= 1",
    )


def ev(kind: EventType, event_id: str, at: int, **fields: object) -> Event:
    return Event(kind, event_id, at, "L1", None, **fields)  # type: ignore[arg-type]


def active_lead() -> list[Event]:
    """A qualified lead (fit 25) with a demo request and an inbound call: active."""
    profile = {"company": "Acme", "industry": "software", "job_title": "VP Sales"}
    return [
        ev(EventType.FORM, "f1", NOW, form_id="demo-request", fields=profile),
        ev(EventType.CALL, "c1", NOW + HOUR, direction="INBOUND", answered=True, duration_s=300),
    ]


def transitions(outputs: list[Any]) -> list[StageTransitioned]:
    return [o for o in outputs if isinstance(o, StageTransitioned)]


def test_every_transition_carries_the_conditions_of_its_new_stage() -> None:
    visit = ev(EventType.VISIT, "v1", NOW - DAY, url="https://example.com/")
    first = transitions(score(LEAD, None, [visit], B2B).outputs)
    assert [(t.from_stage, t.to_stage, t.reason) for t in first] == [
        (None, "visitor", "first_event")
    ]
    assert first[0].conditions == ()
    assert first[0].explanation == (
        "no conditions (the first stage): no later stage's conditions hold"
    )

    active = transitions(score(LEAD, None, active_lead(), B2B).outputs)
    assert [(t.from_stage, t.to_stage) for t in active] == [
        (None, "lead"),
        ("lead", "active_lead"),
    ]
    assert active[0].conditions == ("requests 1 >= 1", "fit 25 >= 15")
    assert active[0].explanation == "requests 1 >= 1 and fit 25 >= 15"
    engagement = f"{active[1].engagement:.1f}"
    assert active[1].conditions == (
        "requests 2 >= 1",
        "fit 25 >= 15",
        f"engagement {engagement} >= 40",
        "last active 0s ago <= 30d",
    )
    assert active[1].explanation == " and ".join(active[1].conditions)


def test_a_time_driven_transition_carries_the_conditions_at_its_due_time() -> None:
    lead = score(LEAD, None, active_lead(), B2B).state
    swept = transitions(advance(LEAD, lead, B2B, NOW + 40 * DAY).outputs)
    assert [(t.to_stage, t.reason) for t in swept] == [
        ("lead", "decay"),
        ("long_term_lead", "inactivity"),
    ]
    assert swept[0].conditions == ("requests 2 >= 1", "fit 25 >= 15")
    assert swept[1].conditions == ("requests 2 >= 1", "fit 25 >= 15", "inactive for 30d >= 30d")
    assert swept[1].explanation == "requests 2 >= 1 and fit 25 >= 15 and inactive for 30d >= 30d"


def test_the_explanation_is_made_only_when_a_transition_is_published() -> None:
    described: list[LeadFacts] = []

    def describe(lead: LeadFacts) -> str:
        described.append(lead)
        return f"total {lead.total:g}"

    visitor = Stage("visitor")
    warm = Stage("warm", (StageCondition(lambda f: f.total >= 10, describe),))
    model = dataclasses.replace(B2B, stages=(visitor, warm))
    visits = [
        ev(EventType.VISIT, f"v{i}", NOW + i * HOUR, url="https://example.com/pricing")
        for i in range(8)
    ]
    result = score(LEAD, None, visits, model)
    moved = transitions(result.outputs)
    assert [t.to_stage for t in moved] == ["visitor", "warm"]
    assert len(result.outputs) > 4  # a score change per visit, most without a transition
    assert len(described) == 1
    assert moved[1].conditions == (f"total {described[0].total:g}",)
