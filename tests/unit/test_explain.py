"""`inspect`'s explanation: the fit rules and the rule contributions add up to the total."""

from __future__ import annotations

import pytest

from leadscore.events import Consent, Event, EventType, ProfileKey
from leadscore.model import default_model
from leadscore.scoring.explain import explain
from leadscore.scoring.score import score
from tests.models import simple_model

DAY = 86_400_000
LEAD = ProfileKey("lead", "L7")


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
