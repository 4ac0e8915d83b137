"""Load and validate a model file; every error names the key path that is wrong."""

from __future__ import annotations

import itertools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from leadscore.durations import DAY_MS, parse_duration_ms
from leadscore.errors import ConfigError, ModelError
from leadscore.model.conditions import (
    Threshold,
    Where,
    attribute_predicate,
    event_predicates,
    event_types,
    stage_predicates,
)
from leadscore.model.types import Category, FitRule, GradeBands, Model, Rule, Stage

RESERVED_RULE_NAMES = ("fit", "decay", "cap")
# what starts and stops the speed-to-lead clock unless the model says otherwise
SPEED_TO_LEAD = {
    "requests": [{"type": "form"}, {"type": "call", "direction": "INBOUND"}],
    "responses": [{"type": "call", "direction": "OUTBOUND"}],
}


def default_model() -> Model:
    """The model bundled with the package."""
    text = resources.files("leadscore.model").joinpath("default.yaml").read_text("utf-8")
    return parse_model(yaml.safe_load(text), source="<bundled default model>")


def load_model(path: str | Path | None) -> Model:
    """Read a YAML model file, or the bundled default when `path` is None."""
    if path is None:
        return default_model()
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}") from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelError(f"{path}: not valid YAML: {exc}") from exc
    return parse_model(document, source=str(path))


def parse_model(document: Any, *, source: str = "<model>") -> Model:
    """Validate a parsed YAML document and build the immutable model."""
    root = Where(source)
    doc = _mapping(document, Where(source, "the model"))
    _only(
        doc,
        root,
        {
            "version",
            "engagement",
            "fit",
            "grades",
            "stages",
            "contact_allowed_by_default",
            "speed_to_lead",
            "categories",
            "allowed_lateness",
        },
    )
    version = doc.get("version")
    if not isinstance(version, str | int) or str(version) == "":
        raise (root / "version").error("required, a non-empty string")

    engagement = _mapping(doc.get("engagement"), root / "engagement")
    _only(engagement, root / "engagement", {"half_life_days", "rules", "cap"})
    engagement_cap = None
    if "cap" in engagement:
        engagement_cap = _number(engagement["cap"], root / "engagement" / "cap")
        if engagement_cap <= 0:
            raise (root / "engagement" / "cap").error("must be greater than 0")
    half_life = _number(engagement.get("half_life_days"), root / "engagement" / "half_life_days")
    if half_life <= 0:
        raise (root / "engagement" / "half_life_days").error("must be greater than 0")
    rules = _rules(engagement.get("rules"), root / "engagement" / "rules")
    categories, category_rules = _categories(
        doc.get("categories", {}), root / "categories", half_life
    )
    _check_categories(rules, categories, root / "engagement" / "rules")
    fit_rules = _fit(doc.get("fit", {}), root / "fit")
    names = [r.name for r in (*rules, *category_rules)] + [r.name for r in fit_rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise root.error(f"rule names must be unique; used twice: {', '.join(duplicates)}")

    grades = _mapping(doc.get("grades"), root / "grades")
    _only(grades, root / "grades", {"fit", "engagement"})
    fit_grades = _bands(grades.get("fit"), root / "grades" / "fit", ("A", "B", "C"), "D")
    engagement_grades = _bands(
        grades.get("engagement"), root / "grades" / "engagement", ("1", "2", "3"), "4"
    )
    requests, responses = _speed_to_lead(
        doc.get("speed_to_lead", SPEED_TO_LEAD), root / "speed_to_lead"
    )
    stages = _stages(doc.get("stages"), root / "stages")
    _check_stage_categories(stages, categories, root / "stages")
    lateness = _duration(doc.get("allowed_lateness", "7d"), root / "allowed_lateness")
    default_contact = doc.get("contact_allowed_by_default", False)
    if not isinstance(default_contact, bool):
        raise (root / "contact_allowed_by_default").error("must be true or false")
    return Model(
        version=str(version),
        half_life_ms=round(half_life * DAY_MS),
        rules=rules,
        engagement_cap=engagement_cap,
        fit_rules=fit_rules,
        fit_grades=fit_grades,
        engagement_grades=engagement_grades,
        stages=stages,
        contact_allowed_by_default=default_contact,
        requests=requests,
        responses=responses,
        categories=categories,
        category_rules=category_rules,
        allowed_lateness_ms=lateness,
    )


def _categories(
    value: Any, where: Where, default_half_life_days: float
) -> tuple[tuple[Category, ...], tuple[Rule, ...]]:
    """`categories: {NAME: {half_life_days, cap, levels, rules}}`: scores beside the
    overall one; their `rules` count towards that category only."""
    doc = _mapping(value, where)
    categories: list[Category] = []
    rules: list[Rule] = []
    for name, spec in doc.items():
        at = where / str(name)
        entry = _mapping(spec if spec is not None else {}, at)
        _only(entry, at, {"half_life_days", "cap", "levels", "rules"})
        half_life = _number(
            entry.get("half_life_days", default_half_life_days), at / "half_life_days"
        )
        if half_life <= 0:
            raise (at / "half_life_days").error("must be greater than 0")
        cap = None
        if "cap" in entry:
            cap = _number(entry["cap"], at / "cap")
            if cap <= 0:
                raise (at / "cap").error("must be greater than 0")
        levels = _levels(entry.get("levels", {}), at / "levels")
        category = _name(str(name), at)
        if any(c.name == category for c in categories):
            raise at.error(f"category {category!r} is declared twice")
        categories.append(Category(category, round(half_life * DAY_MS), cap, levels))
        if "rules" in entry:
            rules += _rules(entry["rules"], at / "rules", category=category)
    return tuple(categories), tuple(rules)


def _levels(value: Any, where: Where) -> tuple[tuple[str, float], ...]:
    """`{hot: 40, warm: 15}`: named thresholds of a category, any order in the file."""
    doc = _mapping(value, where)
    levels = [(_name(str(n), where / str(n)), _number(v, where / str(n))) for n, v in doc.items()]
    bounds = [b for _, b in levels]
    if len(set(bounds)) != len(bounds):
        raise where.error("two levels have the same threshold")
    return tuple(sorted(levels, key=lambda level: -level[1]))


def _check_categories(
    rules: tuple[Rule, ...], categories: tuple[Category, ...], where: Where
) -> None:
    for i, rule in enumerate(rules):
        for category, _ in rule.counts_toward:
            if category is not None:
                _known_category(category, categories, where / i / "categories")


def _check_stage_categories(
    stages: tuple[Stage, ...], categories: tuple[Category, ...], where: Where
) -> None:
    for i, stage in enumerate(stages):
        for timer in stage.timers:
            if isinstance(timer, Threshold) and timer.score.startswith("category:"):
                _known_category(timer.score.partition(":")[2], categories, where / i / "when")


def _known_category(name: str, categories: tuple[Category, ...], where: Where) -> None:
    known = sorted(c.name for c in categories)
    if name not in known:
        declared = ", ".join(known) or "none declared"
        raise where.error(f"no category named {name!r}; categories: {declared}")


def _rules(value: Any, where: Where, *, category: str | None = None) -> tuple[Rule, ...]:
    """Engagement rules; with `category`, the own rules of that category."""
    if not isinstance(value, list) or not value:
        raise where.error("required, a non-empty list of {name, when, points}")
    rules = []
    keys = {"name", "when", "points", "once", "decay", "tags", "cap", "repeat_within"}
    for i, item in enumerate(value):
        at = where / i
        entry = _mapping(item, at)
        _only(entry, at, keys if category else keys | {"categories"})
        points = _number(entry.get("points"), at / "points")
        also = _counts_toward(entry.get("categories"), points, at / "categories")
        counts_toward = ((category, points), *also)
        repeat = (
            _duration(entry["repeat_within"], at / "repeat_within")
            if "repeat_within" in entry
            else None
        )
        cap_points, cap_window = _cap(entry.get("cap"), at / "cap")
        if cap_points is not None and points == 0:
            raise (at / "cap").error(
                "a rule worth 0 points has nothing to cap: a cap counts the rule's own points "
                "(and scales its category points alike)"
            )
        once = _flag(entry, "once", False, at)
        if once and (cap_points is not None or repeat is not None):
            raise (at / "once").error(
                "a once rule earns its points once: it takes no cap and no repeat_within"
            )
        when = entry.get("when")
        if not isinstance(when, dict):
            when = {}
        rules.append(
            Rule(
                name=_name(entry.get("name"), at / "name"),
                points=points,
                conditions=event_predicates(when, at / "when"),
                once=once,
                decays=_flag(entry, "decay", True, at),
                tags=_tags(entry.get("tags", []), at / "tags"),
                when=_summary(entry.get("when")),
                cap_points=cap_points,
                cap_window_ms=cap_window,
                repeat_within_ms=repeat,
                types=event_types(when["type"], at / "when" / "type") if "type" in when else None,
                reads_tags=bool({"has_tag", "lacks_tag"} & set(when)),
                counts_toward=counts_toward,
            )
        )
    return tuple(rules)


def _counts_toward(value: Any, points: float, where: Where) -> tuple[tuple[str, float], ...]:
    """A rule's `categories:`: a list of names (the rule's points in each) or a mapping of
    name to points."""
    if value is None:
        return ()
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        if len(set(value)) != len(value):
            raise where.error("a category is listed twice")
        return tuple((name, points) for name in value)
    if isinstance(value, dict) and value:
        return tuple((str(n), _number(p, where / str(n))) for n, p in value.items())
    raise where.error("a list of category names, or a mapping of category name to points")


def _cap(value: Any, where: Where) -> tuple[float | None, int | None]:
    """`{points: 20, per: 1d}`: at most 20 points from the rule per day of event time."""
    if value is None:
        return None, None
    doc = _mapping(value, where)
    _only(doc, where, {"points", "per"})
    points = _number(doc.get("points"), where / "points")
    if points <= 0:
        raise (where / "points").error("must be greater than 0")
    if "per" not in doc:
        raise (where / "per").error("required, a duration such as 1h, 1d or 7d")
    return points, _duration(doc["per"], where / "per")


def _duration(value: Any, where: Where) -> int:
    try:
        window = parse_duration_ms(str(value))
    except ConfigError:
        window = 0
    if window <= 0:
        raise where.error(f"{value!r} is not a duration such as 1h, 1d or 7d")
    return window


def _speed_to_lead(value: Any, where: Where) -> tuple[Any, Any]:
    doc = _mapping(value, where)
    _only(doc, where, {"requests", "responses"})
    result = []
    for key in ("requests", "responses"):
        alternatives = doc.get(key, SPEED_TO_LEAD[key])
        if not isinstance(alternatives, list) or not alternatives:
            raise (where / key).error("a non-empty list of conditions (any of them)")
        result.append(
            tuple(event_predicates(w, where / key / i) for i, w in enumerate(alternatives))
        )
    return result[0], result[1]


def _fit(value: Any, where: Where) -> tuple[FitRule, ...]:
    doc = _mapping(value, where)
    _only(doc, where, {"lists", "rules"})
    lists_doc = _mapping(doc.get("lists", {}), where / "lists")
    lists = {}
    for name, members in lists_doc.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise (where / "lists" / str(name)).error("must be a list of strings")
        lists[str(name)] = frozenset(m.lower() for m in members)
    rules_doc = doc.get("rules", [])
    if not isinstance(rules_doc, list):
        raise (where / "rules").error("must be a list of {name, when, points}")
    rules = []
    for i, item in enumerate(rules_doc):
        at = where / "rules" / i
        entry = _mapping(item, at)
        _only(entry, at, {"name", "when", "points", "tags"})
        rules.append(
            FitRule(
                name=_name(entry.get("name"), at / "name"),
                points=_number(entry.get("points", 0), at / "points"),
                condition=attribute_predicate(entry.get("when"), lists, at / "when"),
                tags=_tags(entry.get("tags", []), at / "tags"),
                when=_summary(entry.get("when")),
            )
        )
    return tuple(rules)


def _stages(value: Any, where: Where) -> tuple[Stage, ...]:
    if not isinstance(value, list) or not value:
        raise where.error("required, a non-empty list of {name, when, keep}")
    stages: list[Stage] = []
    for i, item in enumerate(value):
        at = where / i
        entry = _mapping(item, at)
        _only(entry, at, {"name", "when", "keep"})
        name = _name(entry.get("name"), at / "name")
        if any(s.name == name for s in stages):
            raise (at / "name").error(f"stage {name!r} is declared twice")
        if i == 0 and "when" in entry:
            raise (at / "when").error("the first stage is where every lead starts: no when")
        if i > 0 and "when" not in entry:
            raise at.error("required: when (the conditions of entering this stage)")
        conditions = stage_predicates(entry["when"], at / "when", _duration) if i else ()
        keep = _flag(entry, "keep", False, at)
        stages.append(Stage(name, conditions, keep, _summary(entry.get("when"))))
    return tuple(stages)


def _bands(value: Any, where: Where, names: tuple[str, ...], fallback: str) -> GradeBands:
    doc = {str(k): v for k, v in _mapping(value, where).items()}
    _only(doc, where, set(names))
    missing = [n for n in names if n not in doc]
    if missing:
        raise where.error(f"missing band(s) {', '.join(missing)}")
    bands = tuple((n, _number(doc[n], where / n)) for n in names)
    for (upper, high), (lower, low) in itertools.pairwise(bands):
        if high <= low:
            raise (where / lower).error(f"must be lower than {where.path}.{upper} ({high:g})")
    return GradeBands(bands, fallback)


def _name(value: Any, where: Where) -> str:
    if not isinstance(value, str) or not value:
        raise where.error("required, a non-empty string")
    if value in RESERVED_RULE_NAMES:
        raise where.error(f"{value!r} is reserved for explanations")
    return value


def _tags(value: Any, where: Where) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise where.error("must be a list of tag names")
    return tuple(value)


def _flag(entry: dict[str, Any], key: str, default: bool, where: Where) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise (where / key).error("must be true or false")
    return value


def _summary(when: Any) -> str:
    if when is None:
        return ""
    if isinstance(when, dict):
        return ", ".join(f"{k}={v}" for k, v in when.items())
    return str(when)


def _mapping(value: Any, where: Where) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error("required, a mapping")
    return value


def _number(value: Any, where: Where) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.error(f"must be a number, got {value!r}")
    return float(value)


def _only(doc: dict[str, Any], where: Where, allowed: set[str]) -> None:
    for key in doc:
        if str(key) not in allowed:
            raise (where / str(key)).error(
                f"unknown key; allowed here: {', '.join(sorted(allowed))}"
            )
