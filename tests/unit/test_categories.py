"""Several scores per lead: categories with their own rules, decay, caps and levels."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.events import Event, EventType, ProfileKey
from leadscore.model import load_model
from leadscore.scoring.outputs import ScoreChanged
from leadscore.scoring.score import advance, score
from leadscore.scoring.timeline import lead_facts, next_change
from leadscore.state.encoding import decode_state, encode_state

DAY = 86_400_000
LEAD = ProfileKey("lead", "L1")
PRODUCTS = load_model(Path(__file__).parents[1] / "models" / "products.yaml")
T0 = 20_000 * DAY
SITE = "https://example.com"


def visit(event_id: str, at: int, path: str) -> Event:
    return Event(EventType.VISIT, event_id, at, "L1", None, url=f"{SITE}{path}")


def form(event_id: str, at: int, form_id: str) -> Event:
    return Event(EventType.FORM, event_id, at, "L1", None, form_id=form_id)


def categories(change: ScoreChanged) -> dict[str, tuple[float, float, str | None]]:
    return {c.name: (c.value, c.delta, c.level) for c in change.categories}


def test_product_b_rises_while_product_a_decays() -> None:
    early = [visit(f"a{i}", T0, "/analytics/dashboards") for i in range(5)]
    first = score(LEAD, None, early, PRODUCTS)
    assert lead_facts(first.state, PRODUCTS)[0].categories == {"product_a": pytest.approx(20)}
    assert first.state.categories["product_a"].published_level == "hot"

    later = score(LEAD, first.state, [visit("b1", T0 + 14 * DAY, "/automation")], PRODUCTS)
    change = [o for o in later.outputs if isinstance(o, ScoreChanged)][-1]
    values = categories(change)
    # two half-lives of product_a (7 days): 20 -> 5; product_b gets its first 4 points
    assert values["product_a"][0] == pytest.approx(5, rel=1e-6)
    assert values["product_b"] == (4.0, 4.0, None)
    assert values["product_a"][2] is None  # below warm (8)
    by_name = {c.name: c for c in change.categories}
    assert [(r.rule, r.points) for r in by_name["product_b"].reasons] == [("automation_page", 4)]
    a_reasons = {r.rule: r.points for r in by_name["product_a"].reasons}
    assert set(a_reasons) == {"decay"}
    assert sum(a_reasons.values()) == pytest.approx(by_name["product_a"].delta)


def test_category_rules_do_not_move_the_overall_score() -> None:
    result = score(LEAD, None, [form("w1", T0, "analytics-webinar")], PRODUCTS)
    facts, _ = lead_facts(result.state, PRODUCTS)
    assert facts.engagement == 0
    assert facts.categories == {"product_a": 10}


def test_a_shared_rule_counts_towards_each_of_its_categories() -> None:
    result = score(LEAD, None, [visit("p1", T0, "/pricing")], PRODUCTS)
    facts, _ = lead_facts(result.state, PRODUCTS)
    assert facts.engagement == 1 + 5  # visit + pricing_page
    assert facts.categories == {"product_a": 5, "product_b": 5}


def test_a_category_level_that_decay_takes_away_is_a_time_driven_change() -> None:
    hot = score(LEAD, None, [visit(f"a{i}", T0, "/analytics") for i in range(5)], PRODUCTS)
    due = next_change(hot.state, PRODUCTS)
    assert due is not None
    assert due.cause == "decay"
    swept = advance(LEAD, hot.state, PRODUCTS, due.at)
    (change,) = swept.outputs
    assert isinstance(change, ScoreChanged)
    assert categories(change)["product_a"][2] == "warm"
    assert change.cause_event_id == f"time:{due.at}"


def test_a_category_can_move_the_stage() -> None:
    trial = [form("d1", T0, "demo-request"), form("t1", T0 + 1, "automation-trial")]
    visits = [visit("b1", T0 + 2, "/automation"), visit("p1", T0 + 3, "/pricing")]
    result = score(LEAD, None, [*trial, *visits], PRODUCTS)
    assert result.state.stage == "automation_prospect"  # product_b 15 + 4 + 5 >= 20
    # decay takes product_b below 20 (its half-life is 30 days): back to active_lead
    due = next_change(result.state, PRODUCTS)
    assert due is not None
    assert due.at == pytest.approx(T0 + 3 + 30 * DAY * math.log2(24 / 20), abs=5)
    swept = advance(LEAD, result.state, PRODUCTS, due.at)
    assert swept.state.stage == "active_lead"
    assert swept.outputs[0].reason == "decay"  # type: ignore[union-attr]


def test_categories_round_trip_through_the_store_encoding() -> None:
    result = score(
        LEAD, None, [visit("p1", T0, "/pricing"), form("w", T0, "analytics-webinar")], PRODUCTS
    )
    assert decode_state(encode_state(result.state)) == result.state


UNCAPPED = dataclasses.replace(
    PRODUCTS,
    categories=tuple(dataclasses.replace(c, cap=None) for c in PRODUCTS.categories),
)
PATHS = ["/", "/analytics", "/automation", "/pricing"]
FORMS = ["demo-request", "analytics-webinar", "automation-trial"]

product_events = st.builds(
    lambda kind, i, at, path, form_id: (
        visit(f"e{i}", at, path) if kind == "visit" else form(f"e{i}", at, form_id)
    ),
    st.sampled_from(["visit", "form"]),
    st.integers(0, 10_000),
    st.integers(DAY, 90 * DAY),
    st.sampled_from(PATHS),
    st.sampled_from(FORMS),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(product_events, max_size=30, unique_by=lambda e: e.event_id), st.randoms())
def test_category_scores_do_not_depend_on_the_order_of_events(
    events: list[Event], rng: object
) -> None:
    shuffled = list(events)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    a = score(LEAD, None, events, UNCAPPED).state
    b = score(LEAD, None, shuffled, UNCAPPED).state
    assert set(a.categories) == set(b.categories)
    for name in a.categories:
        assert a.categories[name].engagement == pytest.approx(
            b.categories[name].engagement, rel=1e-9, abs=1e-9
        )
        assert a.categories[name].fixed == pytest.approx(b.categories[name].fixed)


@settings(max_examples=200, deadline=None)
@given(st.lists(product_events, max_size=40, unique_by=lambda e: e.event_id))
def test_no_category_exceeds_its_cap(events: list[Event]) -> None:
    result = score(LEAD, None, events, PRODUCTS)
    cap = PRODUCTS.category("product_a").cap
    assert cap is not None
    for output in result.outputs:
        if isinstance(output, ScoreChanged):
            for category in output.categories:
                if category.name == "product_a":
                    assert category.value <= cap + 1e-9


@settings(max_examples=200, deadline=None)
@given(
    st.lists(product_events, min_size=1, max_size=30, unique_by=lambda e: e.event_id),
    st.integers(1, 400 * DAY),
)
def test_decay_never_raises_a_category(events: list[Event], wait: int) -> None:
    """Every rule here earns positive points: waiting can only lower a category."""
    state = score(LEAD, None, events, PRODUCTS).state
    now, _ = lead_facts(state, PRODUCTS)
    later, _ = lead_facts(state, PRODUCTS, state.as_of + wait)
    for name, value in now.categories.items():
        assert later.categories[name] <= value + 1e-9


def test_a_category_removed_from_the_model_is_dropped_not_a_crash() -> None:
    state = score(LEAD, None, [visit("a1", T0, "/analytics")], PRODUCTS).state
    assert "product_a" in state.categories
    edited = dataclasses.replace(
        PRODUCTS,
        categories=tuple(c for c in PRODUCTS.categories if c.name != "product_a"),
        category_rules=tuple(r for r in PRODUCTS.category_rules if r.name != "analytics_webinar"),
        rules=tuple(
            dataclasses.replace(r, counts_toward=((None, r.points),)) for r in PRODUCTS.rules
        ),
    )
    later = score(LEAD, state, [visit("a2", T0 + DAY, "/analytics")], edited)
    assert "product_a" not in later.state.categories
    next_change(state, edited)  # reads the stored state of the old model: no KeyError
    swept = advance(LEAD, state, edited, T0 + 90 * DAY)  # no KeyError
    assert "product_a" not in swept.state.categories
