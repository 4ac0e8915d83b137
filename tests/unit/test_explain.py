"""`inspect`'s explanation: the fit rules and the rule contributions add up to the total."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from leadscore.events import Consent, Event, EventType, ProfileKey
from leadscore.model import Model, default_model, load_model
from leadscore.scoring.explain import (
    JSON_FIELDS,
    explain,
    explanation,
    iso_time,
    json_document,
    text_lines,
)
from leadscore.scoring.score import score
from leadscore.scoring.state import LeadState
from tests.models import simple_model

DAY = 86_400_000
LEAD = ProfileKey("lead", "L7")
PRODUCTS = Path(__file__).parents[1] / "models" / "products.yaml"


def test_the_explanation_adds_up_and_shows_decay() -> None:
    model = default_model()
    t0 = 100 * DAY
    events = [
        Event(
            EventType.FORM,
            "f1",
            t0,
            "L7",
            None,
            form_id="demo-request",
            consent=Consent(True, True),
            fields={"company": "Acme", "industry": "software", "email": "a@acme.io"},
        ),
        Event(EventType.VISIT, "v1", t0 + 14 * DAY, "L7", None, url="https://x.com/pricing"),
        Event(EventType.CALL, "c1", t0 + 14 * DAY + 1, "L7", None, outcome="sale"),
    ]
    state = score(LEAD, None, events, model).state
    fit = model.fit(state.attribute_values()).points
    worth = sum(now for _, now in state.contributions.values())
    assert fit + worth == pytest.approx(fit + state.engagement + state.fixed)
    assert state.contributions["demo_request"] == pytest.approx((30.0, 15.0))  # one half-life
    assert state.contributions["sale_call"] == (50.0, 50.0)

    text = "\n".join(explain(LEAD, state, model))
    total = fit + worth
    assert f"total {total:.1f} = fit {fit:.1f} + engagement {worth:.1f}" in text
    assert "stage customer" in text
    assert "in stage customer because: has tag customer" in text
    assert "+30.0  now    +15.0  decay   -15.0  demo_request" in text
    assert "sale_call  (no decay)" in text
    assert "company_known" in text
    assert "tags: customer" in text
    assert "contact allowed: yes" in text
    assert "recent changes (newest first):" in text
    assert "(cause c1)" in text.split("recent changes")[1].splitlines()[1]


def test_history_is_bounded() -> None:
    model = simple_model()  # no cap on the total: every call changes the score
    events = [
        Event(
            EventType.CALL,
            f"c{i}",
            DAY + i,
            "L7",
            None,
            direction="INBOUND",
            answered=True,
            duration_s=120,
        )
        for i in range(30)
    ]
    state = score(LEAD, None, events, model).state
    assert 0 < len(state.history) <= 8
    assert state.history[-1].cause_event_id == "c29"


def test_every_category_and_the_next_change_are_explained() -> None:
    from pathlib import Path

    from leadscore.model import load_model

    model = load_model(Path(__file__).parents[1] / "models" / "products.yaml")
    events = [
        Event(EventType.FORM, "d1", 100 * DAY, "L7", None, form_id="demo-request"),
        Event(EventType.VISIT, "v1", 100 * DAY, "L7", None, url="https://x.com/analytics"),
        Event(EventType.VISIT, "v2", 107 * DAY, "L7", None, url="https://x.com/analytics"),
    ]
    state = score(LEAD, None, events, model).state
    text = "\n".join(explain(LEAD, state, model))
    # 4 points a week ago (one half-life) and 4 now
    assert "category product_a: 6.0 (half-life 7 days)" in text
    assert "+8.0  now     +6.0  decay    -2.0  analytics_page" in text
    assert "category product_b: 0.0 (no points yet)" in text
    assert "next change without new events:" in text
    assert "(decay): stage contact" in text  # engagement falls below 20: active no more
    assert "(decay): stage contact because: requests 1 >= 1\n" in text
    assert (
        "in stage active_lead because: requests 1 >= 1 and engagement 26.3 >= 20 and "
        "last active 0s ago <= 30d\n"
    ) in text


def products_lead() -> tuple[LeadState, Model]:
    """A lead of the products model with decayed points, a category and a next change."""
    model = load_model(PRODUCTS)
    events = [
        Event(
            EventType.FORM,
            "d1",
            100 * DAY,
            "L7",
            None,
            form_id="demo-request",
            consent=Consent(True, False),
            fields={"company": "Acme"},
        ),
        Event(EventType.VISIT, "v1", 100 * DAY + 1, "L7", None, url="https://x.com/analytics"),
        Event(EventType.VISIT, "v2", 103 * DAY + 7, "L7", None, url="https://x.com/analytics"),
    ]
    return score(LEAD, None, events, model).state, model


def test_the_structure_adds_up_exactly() -> None:
    state, model = products_lead()
    e = explanation(LEAD, state, model)
    assert e.engagement == state.engagement + state.fixed
    assert (e.decaying, e.fixed) == (state.engagement, state.fixed)
    assert e.total == e.fit + e.engagement
    assert sum(c.worth for c in e.contributions) == pytest.approx(e.engagement)
    assert {c.rule: (c.earned, c.worth) for c in e.contributions} == state.contributions
    weights = [abs(c.worth) for c in e.contributions]
    assert weights == sorted(weights, reverse=True)
    assert [c.decay for c in e.contributions] == [c.worth - c.earned for c in e.contributions]
    assert (e.as_of, e.first_seen, e.last_activity, e.events) == (
        103 * DAY + 7,
        100 * DAY,
        103 * DAY + 7,
        3,
    )
    assert e.redelivery_memory == len(state.recent) == 3
    assert e.stage == e.stored_stage == "active_lead"
    assert e.kept_stage is None  # active_lead came first: the keep stage was skipped
    assert e.consent == (False, 100 * DAY)
    assert e.attributes == (("company", "Acme", 100 * DAY),)
    assert [c.cause_event_id for c in e.recent_changes] == ["v2", "v1", "d1"]
    a, b = e.categories
    assert (a.name, a.scored, b.name, b.scored) == ("product_a", True, "product_b", False)
    assert a.value == state.categories["product_a"].engagement + state.categories["product_a"].fixed
    assert a.contributions[0].rule == "analytics_page"
    assert e.next_change is not None
    assert e.next_change.at > e.as_of


def test_json_carries_the_text_at_full_precision() -> None:
    state, model = products_lead()
    e = explanation(LEAD, state, model)
    text = "\n".join(text_lines(e))
    assert text.splitlines() == explain(LEAD, state, model)
    doc = json_document(e)
    assert json.loads(json.dumps(doc)) == doc  # floats survive the round trip bit for bit
    assert doc["format"] == 1
    assert doc["found"] is True
    assert (doc["lead_id"], doc["kind"], doc["model_version"]) == ("L7", "lead", "products-1")
    assert doc["total"] == e.total
    assert doc["total"] != round(e.total, 1)
    assert f"total {doc['total']:.1f} = fit {doc['fit']:.1f} + engagement" in text
    assert doc["engagement_decaying"] == state.engagement
    assert doc["grade"] in text
    assert f"stage {doc['stage']} for" in text
    assert f"in stage {doc['stage']} because: {doc['stage_why']}" in text
    assert doc["stage_conditions"][0] == "requests 1 >= 1"
    assert doc["as_of"] == 103 * DAY + 7
    assert doc["as_of_iso"] == "1970-04-14T00:00:00.007Z"
    assert doc["first_seen_iso"] == "1970-04-11T00:00:00.000Z"
    assert doc["counts"] == state.counts
    assert doc["counts"]
    assert doc["visits"] == state.visits
    assert doc["fired"] == state.fired
    assert doc["kept_stage"] is None
    assert doc["consent"] == {
        "contact_allowed": False,
        "at": 100 * DAY,
        "at_iso": "1970-04-11T00:00:00.000Z",
    }
    assert "contact allowed: no (consent of 1970-04-11 00:00:00 UTC)" in text
    assert doc["attributes"] == {
        "company": {"value": "Acme", "at": 100 * DAY, "at_iso": "1970-04-11T00:00:00.000Z"}
    }
    for c in doc["contributions"]:
        assert c["worth"] == state.contributions[c["rule"]][1]
        assert f"{c['earned']:+8.1f}  now {c['worth']:+8.1f}  decay {c['decay']:+7.1f}" in text
    product_a, product_b = doc["categories"]
    assert product_a["value"] == e.categories[0].value
    assert f"category product_a: {product_a['value']:.1f}" in text
    assert product_b == {
        "name": "product_b",
        "scored": False,
        "value": 0.0,
        "level": None,
        "half_life_ms": 30 * DAY,
        "engagement_decaying": 0.0,
        "engagement_fixed": 0.0,
        "engagement_cap": 0.0,
        "contributions": [],
    }
    assert "category product_b: 0.0 (no points yet)" in text
    due = doc["next_change"]
    assert due["at_iso"] == iso_time(due["at"])
    assert f"({due['cause']}): stage {due['stage']} because: {due['stage_why']}" in text
    changes = doc["recent_changes"]
    assert [c["cause_event_id"] for c in changes] == ["v2", "v1", "d1"]
    assert changes[-1]["reasons"] == [{"rule": "demo_request", "points": 30.0}]
    assert doc["published"]["total"] == state.published_total
    assert doc["speed_to_lead_ms"] is None
    assert doc["first_response_at_iso"] is None
    assert "speed-to-lead: no response yet" in text


def test_an_empty_state_has_nulls_not_gaps() -> None:
    e = explanation(ProfileKey("anon", "a1"), LeadState(), simple_model())
    doc = json_document(e)
    assert (doc["kind"], doc["lead_id"], doc["stage"]) == ("anon", "a1", "visitor")
    assert doc["consent"] is None
    assert doc["next_change"] is None
    assert doc["stage_since"] is None
    assert doc["stage_since_iso"] is None
    assert doc["contributions"] == []
    assert doc["recent_changes"] == []
    assert doc["total"] == 0.0
    assert "  (no rule)" in text_lines(e)


def test_iso_time_is_exact_to_the_millisecond() -> None:
    assert iso_time(0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1_714_555_800_250) == "2024-05-01T09:30:00.250Z"
    assert iso_time(1_714_555_800_999) == "2024-05-01T09:30:00.999Z"


def test_the_json_fields_document_every_field() -> None:
    state, model = products_lead()
    doc = json_document(explanation(LEAD, state, model))
    documented = JSON_FIELDS.replace("_iso", "")
    for name in doc:
        assert name.removesuffix("_iso") in documented, name
