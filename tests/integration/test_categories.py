"""Category scores end to end: one product line rises while another cools down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from leadscore.codec import decode_output
from leadscore.model import load_model
from tests.integration.conftest import Env, read_all, wait_until
from tests.records import encoded, now_ms

DAY = 86_400_000
PRODUCTS = load_model(Path(__file__).parents[1] / "models" / "products.yaml")


def score_changes(env: Env) -> list[dict[str, Any]]:
    outputs = [
        (dict(m.headers())["leadscore-type"].decode(), m.value())
        for m in read_all(env, "scores", idle_s=1.0)
    ]
    return [decode_output(k, v) for k, v in outputs if k == "score_changed"]


def test_product_b_rises_while_product_a_decays(env: Env) -> None:
    t0 = now_ms() - 20 * DAY
    analytics = [
        encoded("Visit", "C1", occurred_at=t0 + i, url="https://example.com/analytics/tour")
        for i in range(6)
    ]
    automation = encoded(
        "Visit",
        "C1",
        event_id="automation-visit",
        occurred_at=t0 + 19 * DAY,
        url="https://example.com/automation",
    )
    env.produce([(env.topic("visits"), b"C1", v) for v in [*analytics, automation]])
    env.start_worker(model=PRODUCTS)
    wait_until(
        lambda: any(c["cause_event_id"] == "automation-visit" for c in score_changes(env)),
        what="the automation visit scored",
    )
    changes = score_changes(env)
    levels = [{c["name"]: c["level"] for c in o["categories"]} for o in changes]
    assert levels[5]["product_a"] == "hot"  # six analytics visits: 24 points
    # decay took product_a down a level, then below every level, while nothing happened
    timed = [o for o in changes if str(o["cause_event_id"]).startswith("time:")]
    assert [o["categories"][0]["level"] for o in timed] == ["warm", None]
    assert all(o["categories"][0]["reasons"][0]["rule"] == "decay" for o in timed)

    last = changes[-1]
    assert last["cause_event_id"] == "automation-visit"
    by_name = {c["name"]: c for c in last["categories"]}
    assert by_name["product_b"]["value"] == pytest.approx(4.0)
    assert by_name["product_b"]["delta"] == pytest.approx(4.0)
    assert by_name["product_b"]["reasons"] == [{"rule": "automation_page", "points": 4.0}]
    assert by_name["product_a"]["delta"] < 0
    assert [r["rule"] for r in by_name["product_a"]["reasons"]] == ["decay"]
    assert by_name["product_a"]["value"] == pytest.approx(24 * 2 ** (-19 / 7), rel=1e-4)
