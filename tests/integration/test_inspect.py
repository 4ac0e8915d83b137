"""`leadscore inspect --json` on a lead a worker scored: the document is the stored state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from leadscore.cli import main
from leadscore.events import ProfileKey
from leadscore.model import load_model
from leadscore.scoring.explain import iso_time
from leadscore.state.store import StateStore
from tests.integration.conftest import Env, wait_until
from tests.records import encoded, now_ms

DAY = 86_400_000
PRODUCTS = Path(__file__).parents[1] / "models" / "products.yaml"


def inspect(env: Env, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        [
            "inspect",
            *args,
            "--redis-url",
            env.services.redis_url,
            "--state-namespace",
            env.prefix,
            "--model",
            str(PRODUCTS),
        ],
    )


def test_inspect_json_is_the_stored_state_unrounded(env: Env) -> None:
    model = load_model(PRODUCTS)
    t = now_ms() - 3 * DAY - 7  # decayed points: figures the text rounds
    forms, visits = env.topic("forms"), env.topic("visits")
    env.start_worker(model=model)
    env.produce([(forms, b"L9", encoded("FormSubmission", "L9", event_id="f9", occurred_at=t))])
    wait_until(lambda: env.committed()[forms] == 1, what="the form scored")
    analytics = "https://x.com/analytics"
    env.produce(
        [
            (
                visits,
                b"L9",
                encoded("Visit", "L9", event_id="v9", occurred_at=t + DAY, url=analytics),
            ),
            (visits, b"a9", encoded("Visit", None, event_id="v1", anonymous_id="anon-9")),
        ]
    )
    wait_until(lambda: env.committed()[visits] == 2, what="the visits scored")

    result = inspect(env, "L9", "--json")
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    stored = StateStore(env.redis, namespace=env.prefix, ttl_ms=0).read(ProfileKey("lead", "L9"))
    state = stored.state
    assert state is not None
    fit = model.fit(state.attribute_values()).points

    assert (doc["found"], doc["lead_id"], doc["kind"]) == (True, "L9", "lead")
    assert doc["model_version"] == "products-1"
    assert doc["store"] == {
        "version": stored.version,
        "watermarks": [
            {"topic": topic, "partition": partition, "offset": offset}
            for (topic, partition), offset in sorted(stored.watermarks.items())
        ],
        "schedule": None
        if stored.schedule is None
        else {"topic": stored.schedule[0], "partition": stored.schedule[1]},
        "pending_outputs": len(stored.pending),
    }
    assert stored.watermarks == {(forms, 0): 0, (visits, 0): 0}
    assert (doc["as_of"], doc["first_seen"], doc["last_activity"]) == (t + DAY, t, t + DAY)
    assert (doc["as_of"], doc["first_seen"], doc["last_activity"]) == (
        state.as_of,
        state.first_seen,
        state.last_activity,
    )
    assert doc["events"] == state.events == 2
    assert doc["redelivery_memory"] == len(state.recent) == 2
    # every figure exactly as stored, not as the text rounds it
    assert doc["engagement_decaying"] == state.engagement
    assert doc["engagement_fixed"] == state.fixed
    assert doc["engagement"] == state.engagement + state.fixed
    assert doc["fit"] == fit
    assert doc["total"] == fit + state.engagement + state.fixed
    assert doc["total"] != round(doc["total"], 1)
    assert doc["grade"] == model.grade(fit, state.engagement + state.fixed)
    assert doc["stored_stage"] == state.stage == doc["stage"] == "active_lead"
    assert doc["stage_since"] == state.stage_since
    assert doc["kept_stage"] == state.kept
    assert doc["tags"] == sorted(state.tags)
    assert doc["counts"] == state.counts
    assert doc["speed_to_lead_ms"] == state.speed_to_lead_ms
    assert {c["rule"]: (c["earned"], c["worth"]) for c in doc["contributions"]} == {
        rule: tuple(pair) for rule, pair in state.contributions.items()
    }
    category = state.categories["product_a"]
    product_a = doc["categories"][0]
    assert product_a["name"] == "product_a"
    assert product_a["value"] == category.engagement + category.fixed
    assert product_a["level"] == model.category("product_a").level(product_a["value"])
    assert {c["rule"]: (c["earned"], c["worth"]) for c in product_a["contributions"]} == {
        rule: tuple(pair) for rule, pair in category.contributions.items()
    }
    assert state.consent == (True, t)
    assert doc["consent"] == {"contact_allowed": True, "at": t, "at_iso": iso_time(t)}
    assert doc["first_seen_iso"] == iso_time(t)
    assert doc["attributes"] == {
        name: {"value": value, "at": at, "at_iso": iso_time(at)}
        for name, (value, at) in state.attributes.items()
    }
    assert doc["attributes"]["company"]["value"] == "Acme"
    assert [c["cause_event_id"] for c in doc["recent_changes"]] == ["v9", "f9"]
    assert doc["recent_changes"][0]["total"] == state.history[-1].total
    assert doc["next_change"]["at"] > state.as_of

    # the text is the same account, rounded
    text = inspect(env, "L9")
    assert text.exit_code == 0, text.output
    assert f"total {doc['total']:.1f} = fit {doc['fit']:.1f} + engagement" in text.output
    assert f"in stage {doc['stage']} because: {doc['stage_why']}" in text.output
    assert f"category product_a: {product_a['value']:.1f}" in text.output

    anonymous = inspect(env, "anon-9", "--anonymous", "--json")
    assert anonymous.exit_code == 0, anonymous.output
    anon = json.loads(anonymous.output)
    assert (anon["lead_id"], anon["kind"], anon["events"]) == ("anon-9", "anon", 1)


def test_inspect_json_of_an_unknown_lead(env: Env) -> None:
    missing = inspect(env, "nobody", "--json")
    assert missing.exit_code == 1  # as the text
    assert json.loads(missing.stdout) == {"lead_id": "nobody", "kind": "lead", "found": False}
    text = inspect(env, "nobody")
    assert text.exit_code == 1
    assert "no state for lead 'nobody'" in text.output
    anonymous = inspect(env, "nobody", "--anonymous", "--json")
    assert anonymous.exit_code == 1
    assert json.loads(anonymous.stdout)["kind"] == "anon"
