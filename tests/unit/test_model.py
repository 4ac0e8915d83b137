"""Model loading: the bundled model is valid; each mistake names its key path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadscore.errors import ModelError
from leadscore.model import default_model, load_model, parse_model
from leadscore.model.conditions import LeadFacts

DAY = 86_400_000
BUNDLED = yaml.safe_load(
    (Path(__file__).parents[2] / "src/leadscore/model/default.yaml").read_text()
)


def test_the_bundled_model_loads() -> None:
    model = default_model()
    assert model.version == "b2b-2"
    assert {r.name for r in model.rules} >= {"pricing_page", "demo_request", "careers_page"}
    assert [s.name for s in model.stages] == [
        "visitor",
        "contact",
        "lead",
        "long_term_lead",
        "active_lead",
        "disqualified",
        "customer",
    ]
    assert model.grade(25, 60) == "A1"
    assert model.grade(0, 0) == "D4"
    assert [c.name for c in model.categories] == ["analytics", "automation"]
    assert {r.name for r in model.category_rules} == {
        "analytics_page",
        "analytics_request",
        "automation_page",
        "automation_request",
    }

    def facts(
        fit: float = 0,
        engagement: float = 0,
        tags: tuple[str, ...] = (),
        requests: int = 0,
        quiet_days: int = 0,
    ) -> LeadFacts:
        return LeadFacts(
            fit + engagement,
            fit,
            engagement,
            frozenset(tags),
            {"requests": requests},
            (),
            0,
            quiet_days * 86_400_000,
        )

    assert model.stage(facts(fit=30, engagement=80)).name == "visitor"  # never asked
    assert model.stage(facts(requests=1)).name == "contact"
    assert model.stage(facts(fit=15, requests=1)).name == "lead"
    assert model.stage(facts(fit=15, engagement=40, requests=1)).name == "active_lead"
    assert model.stage(facts(fit=15, engagement=40, requests=1, quiet_days=31)).name == (
        "long_term_lead"
    )
    assert model.stage(facts(fit=15, requests=1, tags=("job_seeker",))).name == "disqualified"
    assert model.stage(facts(tags=("customer", "bot"))).name == "customer"
    # kept stages: a lead never goes back to contact; a customer is never disqualified
    assert model.stage(facts(requests=1), kept="lead").name == "lead"
    assert model.stage(facts(tags=("bot",)), kept="customer").name == "customer"


def test_a_model_file_is_read_from_disk(tmp_path: Path) -> None:
    document = copy.deepcopy(BUNDLED)
    document["version"] = "custom-7"
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(document))
    assert load_model(path).version == "custom-7"


def _with(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(BUNDLED)
    change(document)
    return document


def _rule(d: dict[str, Any], i: int = 0) -> dict[str, Any]:
    rule: dict[str, Any] = d["engagement"]["rules"][i]
    return rule


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d.pop("version"), "version"),
        (lambda d: d["engagement"].update(half_life_days=0), "engagement.half_life_days"),
        (lambda d: d["engagement"].update(rules=[]), "engagement.rules"),
        (lambda d: _rule(d).update(points="two"), "engagement.rules[0].points"),
        (lambda d: _rule(d).pop("when"), "engagement.rules[0].when"),
        (lambda d: _rule(d)["when"].update(colour="red"), "engagement.rules[0].when.colour"),
        (lambda d: _rule(d)["when"].update(type="email"), "engagement.rules[0].when.type"),
        (
            lambda d: _rule(d)["when"].update(direction="SIDEWAYS"),
            "engagement.rules[0].when.direction",
        ),
        (
            lambda d: _rule(d)["when"].update(url={"regex": "("}),
            "engagement.rules[0].when.url.regex",
        ),
        (
            lambda d: _rule(d)["when"].update(min_duration_s="long"),
            "engagement.rules[0].when.min_duration_s",
        ),
        (lambda d: _rule(d).update(once="yes"), "engagement.rules[0].once"),
        (lambda d: _rule(d).update(name="decay"), "engagement.rules[0].name"),
        (lambda d: _rule(d).update(tags="bot"), "engagement.rules[0].tags"),
        (lambda d: _rule(d).update(cap={"points": 5}), "engagement.rules[0].cap.per"),
        (
            lambda d: _rule(d).update(cap={"points": -1, "per": "1d"}),
            "engagement.rules[0].cap.points",
        ),
        (
            lambda d: _rule(d).update(cap={"points": 5, "per": "soon"}),
            "engagement.rules[0].cap.per",
        ),
        (lambda d: d["engagement"].update(cap=0), "engagement.cap"),
        (lambda d: _rule(d).update(repeat_within="often"), "engagement.rules[0].repeat_within"),
        (
            lambda d: _rule(d).update(once=True, cap={"points": 5, "per": "1d"}),
            "engagement.rules[0].once",
        ),
        (lambda d: _rule(d).update(once=True, repeat_within="7d"), "engagement.rules[0].once"),
        (lambda d: _rule(d).update(name="cap"), "engagement.rules[0].name"),
        (
            lambda d: _rule(d).update(points=0, cap={"points": 5, "per": "1d"}),
            "engagement.rules[0].cap",
        ),
        (lambda d: d.update(allowed_lateness="a week"), "allowed_lateness"),
        (lambda d: d.update(speed_to_lead={"requests": []}), "speed_to_lead.requests"),
        (
            lambda d: d["fit"]["rules"][1]["when"].update(in_list="nope"),
            "fit.rules[1].when.in_list",
        ),
        (lambda d: d["fit"]["rules"][0]["when"].update(equals="x"), "fit.rules[0].when"),
        (
            lambda d: d["fit"]["lists"].update(free_mail_domains="gmail.com"),
            "fit.lists.free_mail_domains",
        ),
        (lambda d: d["grades"]["fit"].pop("B"), "grades.fit"),
        (lambda d: d["grades"]["engagement"].update({"2": 80}), "grades.engagement.2"),
        (lambda d: d["stages"][2]["when"].update(min_fit="high"), "stages[2].when.min_fit"),
        (lambda d: d["stages"][2]["when"].update(colour=1), "stages[2].when.colour"),
        (
            lambda d: d["stages"][3]["when"].update(inactive_for="a while"),
            "stages[3].when.inactive_for",
        ),
        (
            lambda d: d["stages"][3]["when"].update(min_visits={"count": 50, "within": "7d"}),
            "stages[3].when.min_visits",
        ),
        (lambda d: d["stages"][1].update(name="visitor"), "stages[1].name"),
        (lambda d: d["stages"][4].pop("when"), "stages[4]"),
        (lambda d: d["stages"][0].update(when={"min_total": 1}), "stages[0].when"),
        (lambda d: d["stages"][6].update(keep="yes"), "stages[6].keep"),
        (lambda d: d.update(stages=[]), "stages"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: _rule(d).update(categories=["nope"]), "engagement.rules[0].categories"),
        (lambda d: _rule(d).update(categories="a"), "engagement.rules[0].categories"),
        (lambda d: _rule(d).update(categories={"a": "x"}), "engagement.rules[0].categories.a"),
        (lambda d: d.update(categories=["a"]), "categories"),
        (
            lambda d: d.update(categories={"a": {"half_life_days": 0}}),
            "categories.a.half_life_days",
        ),
        (lambda d: d.update(categories={"a": {"cap": -1}}), "categories.a.cap"),
        (lambda d: d.update(categories={"a": {"levels": {"x": 1, "y": 1}}}), "categories.a.levels"),
        (lambda d: d.update(categories={"a": {"levels": {"x": "hot"}}}), "categories.a.levels.x"),
        (lambda d: d.update(categories={"a": {"colour": 1}}), "categories.a.colour"),
        (lambda d: d.update(categories={"fit": {}}), "categories.fit"),
        (
            lambda d: d.update(categories={"a": {"rules": [{**_rule(d), "categories": ["a"]}]}}),
            "categories.a.rules[0].categories",
        ),
        (
            lambda d: d["stages"][2]["when"].update(min_category={"nope": 3}),
            "stages[2].when",
        ),
        (
            lambda d: d["stages"][2]["when"].update(min_category=3),
            "stages[2].when.min_category",
        ),
        (lambda d: d.update(contact_allowed_by_default="yes"), "contact_allowed_by_default"),
    ],
)
def test_a_mistake_names_its_key_path(change: Any, path: str) -> None:
    with pytest.raises(ModelError) as caught:
        parse_model(_with(change), source="m.yaml")
    assert f"m.yaml: {path}:" in str(caught.value)


def test_rule_names_must_be_unique() -> None:
    document = _with(lambda d: _rule(d, 1).update(name=_rule(d, 0)["name"]))
    with pytest.raises(ModelError, match="used twice: page_visit"):
        parse_model(document, source="m.yaml")


def test_unreadable_and_invalid_yaml_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        load_model(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [unclosed")
    with pytest.raises(ModelError, match="not valid YAML"):
        load_model(bad)


def test_a_model_using_every_feature_validates() -> None:
    model = load_model(Path(__file__).parents[1] / "models" / "full.yaml")
    assert model.version == "everything-1"
    assert model.engagement_cap == 300
    assert len(model.rules) == 18
    assert len(model.fit_rules) == 12
    assert [s.keep for s in model.stages].count(True) == 3
    assert model.contact_allowed_by_default is True
    assert [c.name for c in model.categories] == ["analytics", "automation"]
    assert model.category("analytics").levels == (("hot", 30.0), ("warm", 10.0))
    assert [r.name for r in model.category_rules] == ["analytics_webinar"]


@pytest.mark.parametrize(
    ("when", "holds", "fails"),
    [
        ({"min_total": 10}, {"total": 10}, {"total": 9}),
        ({"max_total": 10}, {"total": 9}, {"total": 10}),
        ({"min_fit": 5}, {"fit": 5}, {"fit": 4}),
        ({"max_fit": 5}, {"fit": 4}, {"fit": 5}),
        ({"min_engagement": 5}, {"engagement": 5}, {"engagement": 1}),
        ({"max_engagement": 5}, {"engagement": 1}, {"engagement": 5}),
        ({"has_tag": ["a", "b"]}, {"tags": {"b"}}, {"tags": {"c"}}),
        ({"lacks_tag": "a"}, {"tags": {"b"}}, {"tags": {"a"}}),
        ({"min_requests": 2}, {"counts": {"requests": 2}}, {"counts": {"requests": 1}}),
        ({"min_forms": 1}, {"counts": {"forms": 1}}, {"counts": {}}),
        ({"min_answered_calls": 1}, {"counts": {"answered_calls": 3}}, {"counts": {}}),
        ({"min_visits": 2}, {"visit_times": (1, 2)}, {"visit_times": (1,)}),
        (
            {"min_visits": {"count": 2, "within": "1d"}},
            {"visit_times": (10 * DAY - 5, 10 * DAY - 1)},
            {"visit_times": (DAY, 10 * DAY - 1)},
        ),
        ({"active_within": "7d"}, {"last_activity": 4 * DAY}, {"last_activity": DAY}),
        ({"inactive_for": "7d"}, {"last_activity": DAY}, {"last_activity": 4 * DAY}),
        ({"min_category": {"a": 5}}, {"categories": {"a": 5}}, {"categories": {"a": 4}}),
        ({"max_category": {"a": 5}}, {"categories": {"a": 4}}, {"categories": {"a": 5}}),
    ],
)
def test_each_stage_condition(
    when: dict[str, Any], holds: dict[str, Any], fails: dict[str, Any]
) -> None:
    model = parse_model(
        {
            **{k: BUNDLED[k] for k in ("version", "engagement", "fit", "grades")},
            "stages": [{"name": "start"}, {"name": "there", "when": when}],
            "categories": {"a": {}},
        }
    )

    def facts(**values: Any) -> LeadFacts:
        base: dict[str, Any] = {
            "total": 0.0,
            "fit": 0.0,
            "engagement": 0.0,
            "tags": frozenset(),
            "counts": {},
            "visit_times": (),
            "last_activity": 10 * DAY,
            "now": 10 * DAY,
        }
        base.update(values)
        base["tags"] = frozenset(base["tags"])
        return LeadFacts(**base)

    assert model.stage(facts(**holds)).name == "there"
    assert model.stage(facts(**fails)).name == "start"
