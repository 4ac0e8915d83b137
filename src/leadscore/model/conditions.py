"""The condition language of model rules, compiled to plain predicates (pure).

Event conditions (`when:` of an engagement rule) test one event and the lead's tags; all
keys of a `when:` must hold. Text values match as a case-insensitive glob (`*/pricing*`),
a list of globs (any), or `{regex: ...}`. Attribute conditions (`when:` of a fit rule)
test one profile attribute.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from leadscore.errors import ModelError
from leadscore.events import Event, EventType
from leadscore.model.readable import bound_text, figure, span_text, tag_text

EventPredicate = Callable[[Event, frozenset[str]], bool]
TextMatch = Callable[[str | None], bool]
ENUMS = {
    "direction": ("INBOUND", "OUTBOUND"),
    "device": ("DESKTOP", "MOBILE", "TABLET", "OTHER"),
    "completed_by": ("SELF", "AGENT"),
}


class Where:
    """A key path in the model file, for error messages: `engagement.rules[3].when.url`."""

    def __init__(self, source: str, path: str = "") -> None:
        self.source = source
        self.path = path

    def __truediv__(self, key: str | int) -> Where:
        if isinstance(key, int):
            return Where(self.source, f"{self.path}[{key}]")
        return Where(self.source, f"{self.path}.{key}" if self.path else key)

    def error(self, message: str) -> ModelError:
        return ModelError(f"{self.source}: {self.path}: {message}")


def text_matcher(spec: Any, where: Where) -> TextMatch:
    """A glob, a list of globs, or {regex: pattern}."""
    if isinstance(spec, str):
        return _globs([spec])
    if isinstance(spec, list) and spec and all(isinstance(s, str) for s in spec):
        return _globs(spec)
    if isinstance(spec, dict) and set(spec) == {"regex"} and isinstance(spec["regex"], str):
        try:
            pattern = re.compile(spec["regex"])
        except re.error as exc:
            raise (where / "regex").error(f"not a valid regular expression: {exc}") from exc
        return lambda value: value is not None and pattern.search(value) is not None
    raise where.error("expected a glob, a list of globs, or {regex: PATTERN}")


def _globs(patterns: list[str]) -> TextMatch:
    compiled = [re.compile(fnmatch.translate(p), re.IGNORECASE) for p in patterns]
    return lambda value: value is not None and any(c.match(value) for c in compiled)


def _choices(spec: Any, allowed: tuple[str, ...] | None, where: Where) -> frozenset[str]:
    values = spec if isinstance(spec, list) else [spec]
    if not values or not all(isinstance(v, str) for v in values):
        raise where.error("expected a value or a list of values")
    if allowed is not None:
        for v in values:
            if v not in allowed:
                raise where.error(f"{v!r} is not one of {', '.join(allowed)}")
    return frozenset(values)


def _number(spec: Any, where: Where) -> float:
    if isinstance(spec, bool) or not isinstance(spec, int | float):
        raise where.error(f"must be a number, got {spec!r}")
    return float(spec)


def _named_texts(spec: Any, where: Where) -> list[tuple[str, TextMatch]]:
    if not isinstance(spec, dict) or not spec:
        raise where.error("expected a mapping of name to glob, list of globs or {regex}")
    return [(str(name), text_matcher(value, where / str(name))) for name, value in spec.items()]


def _event_condition(key: str, spec: Any, where: Where) -> EventPredicate:
    if key == "type":
        types = event_types(spec, where)
        return lambda e, _: e.type in types
    if key in ("url", "user_agent", "campaign"):
        match = text_matcher(spec, where)
        if key == "campaign":
            return lambda e, _: match(e.source.campaign if e.source else None)
        return lambda e, _: match(getattr(e, key))
    if key in ("form_id", "outcome"):
        values = _choices(spec, None, where)
        return lambda e, _: getattr(e, key) in values
    if key == "channel":
        channels = _choices(spec, None, where)
        return lambda e, _: e.source is not None and e.source.channel in channels
    if key in ENUMS:
        choices = _choices(spec, ENUMS[key], where)
        return lambda e, _: getattr(e, key) in choices
    if key == "answered":
        if not isinstance(spec, bool):
            raise where.error("must be true or false")
        return lambda e, _: e.answered is spec
    if key in ("min_duration_s", "min_duration_ms", "min_fill_ms", "max_fill_ms"):
        bound = _number(spec, where)
        attribute = {"min_duration_s": "duration_s", "min_duration_ms": "duration_ms"}.get(
            key, "fill_duration_ms"
        )
        if key == "max_fill_ms":
            return lambda e, _: e.fill_duration_ms is not None and e.fill_duration_ms <= bound
        return lambda e, _: (v := getattr(e, attribute)) is not None and v >= bound
    if key in ("trait", "field"):
        tests = _named_texts(spec, where)
        source = "traits" if key == "trait" else "fields"
        return lambda e, _: all(m(getattr(e, source).get(n)) for n, m in tests)
    if key in ("has_tag", "lacks_tag"):
        tags = _choices(spec, None, where)
        if key == "has_tag":
            return lambda _, lead_tags: bool(tags & lead_tags)
        return lambda _, lead_tags: not tags & lead_tags
    raise where.error(f"unknown condition; allowed here: {', '.join(EVENT_CONDITIONS)}")


EVENT_CONDITIONS = (
    "type",
    "url",
    "form_id",
    "direction",
    "answered",
    "min_duration_s",
    "outcome",
    "min_duration_ms",
    "channel",
    "campaign",
    "device",
    "user_agent",
    "min_fill_ms",
    "max_fill_ms",
    "completed_by",
    "trait",
    "field",
    "has_tag",
    "lacks_tag",
)


def event_types(spec: Any, where: Where) -> frozenset[EventType]:
    """The event types a `type:` condition names."""
    return frozenset(EventType(v) for v in _choices(spec, tuple(t.value for t in EventType), where))


def event_predicates(spec: Any, where: Where) -> tuple[EventPredicate, ...]:
    """Compile an engagement rule's `when:`; an empty or missing `when` matches no event."""
    if not isinstance(spec, dict) or not spec:
        raise where.error(
            f"required, a mapping of conditions; allowed: {', '.join(EVENT_CONDITIONS)}"
        )
    return tuple(_event_condition(str(k), v, where / str(k)) for k, v in spec.items())


AttributePredicate = Callable[[Mapping[str, str]], bool]
ATTRIBUTE_TESTS = (
    "exists",
    "equals",
    "in",
    "in_list",
    "matches",
    "regex",
    "gte",
    "lte",
    "gt",
    "lt",
)


def attribute_predicate(
    spec: Any, lists: Mapping[str, frozenset[str]], where: Where
) -> AttributePredicate:
    """Compile a fit rule's `when: {attribute: NAME, <one test>: ...}`."""
    if not isinstance(spec, dict) or not isinstance(spec.get("attribute"), str):
        raise where.error(
            "required: {attribute: NAME, and one of " + ", ".join(ATTRIBUTE_TESTS) + "}"
        )
    name = spec["attribute"]
    tests = [k for k in spec if k != "attribute"]
    if len(tests) != 1 or tests[0] not in ATTRIBUTE_TESTS:
        raise where.error(f"name exactly one test besides attribute: {', '.join(ATTRIBUTE_TESTS)}")
    test, value = tests[0], spec[tests[0]]
    at = where / test
    if test == "exists":
        if not isinstance(value, bool):
            raise at.error("must be true or false")
        return lambda a: bool(a.get(name)) is value
    if test in ("equals", "in"):
        values = frozenset(v.lower() for v in _choices(value, None, at))
        return lambda a: (a.get(name) or "").lower() in values
    if test == "in_list":
        if value not in lists:
            known = ", ".join(sorted(lists)) or "none declared under fit.lists"
            raise at.error(f"no list named {value!r}; lists: {known}")
        members = lists[value]
        return lambda a: (a.get(name) or "").lower() in members
    if test in ("matches", "regex"):
        match = text_matcher(value if test == "matches" else {"regex": value}, at)
        return lambda a: match(a.get(name))
    bound = _number(value, at)
    compare = {"gte": float.__ge__, "lte": float.__le__, "gt": float.__gt__, "lt": float.__lt__}[
        test
    ]
    return lambda a: (n := _as_number(a.get(name))) is not None and compare(n, bound)


def _as_number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(slots=True)
class LeadFacts:
    """What stage conditions can test about a lead, evaluated at time `now` (not frozen:
    made several times per event, and a frozen dataclass costs several times as much to
    build; nothing changes one once made)."""

    total: float
    fit: float
    engagement: float
    tags: frozenset[str]
    counts: Mapping[str, int]
    visit_times: tuple[int, ...]
    last_activity: int
    now: int
    categories: Mapping[str, float] = field(default_factory=dict)


StagePredicate = Callable[[LeadFacts], bool]


@dataclass(frozen=True, slots=True)
class Idle:
    """A condition on the time since the lead's last activity: it flips `span` ms after
    it (`active_within` turns false one ms later, `inactive_for` turns true then)."""

    span: int


@dataclass(frozen=True, slots=True)
class Threshold:
    """A bound on a decaying score: `total`, `engagement` or `category:<name>`."""

    score: str
    bound: float


@dataclass(frozen=True, slots=True)
class VisitWindow:
    """`min_visits` within a window: a visit stops counting `window` ms after it."""

    window: int


Timer = Idle | Threshold | VisitWindow


@dataclass(frozen=True, slots=True)
class StageCondition:
    """A compiled stage condition, how it reads for a lead (`describe`: the lead's value
    beside the bound, e.g. `total 41.5 >= 40`) and, if its truth can change with time
    alone, how."""

    test: StagePredicate
    describe: Callable[[LeadFacts], str]
    timer: Timer | None = None

    def __call__(self, facts: LeadFacts) -> bool:
        return self.test(facts)


STAGE_CONDITIONS = (
    "min_total",
    "max_total",
    "min_fit",
    "max_fit",
    "min_engagement",
    "max_engagement",
    "min_category",
    "max_category",
    "has_tag",
    "lacks_tag",
    "min_requests",
    "min_forms",
    "min_answered_calls",
    "min_visits",
    "active_within",
    "inactive_for",
)
_BOUNDS = {"total", "fit", "engagement"}
COUNTED = ("requests", "forms", "answered_calls")
# Scores are sums of decayed points, and two arrival orders sum them in another order:
# the results may differ in their last bits. A score within this (relative) distance
# below a bound counts as reaching it, so that an exact crossing (points that halve onto
# a bound, as 10 points do onto 5 after one half-life) is decided alike in every order.
TOLERANCE = 1e-9


def at_least(bound: float) -> float:
    """The lowest score that counts as reaching `bound` (see TOLERANCE)."""
    return bound - TOLERANCE * max(1.0, abs(bound))


def _stage_condition(
    key: str, spec: Any, where: Where, duration: Callable[[Any, Where], int]
) -> StageCondition:
    kind, _, name = key.partition("_")
    if kind in ("min", "max") and name in _BOUNDS:
        bound = _number(spec, where)
        low = at_least(bound)
        timer = Threshold(name, bound) if name != "fit" else None
        if kind == "min":
            return StageCondition(
                lambda f: float(getattr(f, name)) >= low,
                lambda f: f"{name} {figure(getattr(f, name), bound)} >= {bound_text(bound)}",
                timer,
            )
        return StageCondition(
            lambda f: float(getattr(f, name)) < low,
            lambda f: f"{name} {figure(getattr(f, name), bound)} < {bound_text(bound)}",
            timer,
        )
    if kind in ("min", "max") and name == "category":
        if not isinstance(spec, dict) or len(spec) != 1:
            raise where.error("expected {CATEGORY: bound}, e.g. {product_a: 20}")
        ((category, value),) = spec.items()
        bound = _number(value, where / str(category))
        category = str(category)
        timer = Threshold(f"category:{category}", bound)
        op = ">=" if kind == "min" else "<"

        def describe(f: LeadFacts) -> str:
            score = f.categories.get(category, 0.0)
            return f"category {category} {figure(score, bound)} {op} {bound_text(bound)}"

        low = at_least(bound)
        if kind == "min":
            return StageCondition(lambda f: f.categories.get(category, 0.0) >= low, describe, timer)
        return StageCondition(lambda f: f.categories.get(category, 0.0) < low, describe, timer)
    if key in ("has_tag", "lacks_tag"):
        tags = _choices(spec, None, where)
        if key == "has_tag":
            return StageCondition(
                lambda f: bool(tags & f.tags), lambda f: tag_text("has", tags & f.tags)
            )
        return StageCondition(lambda f: not tags & f.tags, lambda f: tag_text("lacks", tags))
    if kind == "min" and name in COUNTED:
        least = _count(spec, where)
        label = name.replace("_", " ")
        return StageCondition(
            lambda f: f.counts.get(name, 0) >= least,
            lambda f: f"{label} {f.counts.get(name, 0)} >= {least}",
        )
    if key == "min_visits":
        if isinstance(spec, dict):
            _only_keys(spec, {"count", "within"}, where)
            least = _count(spec.get("count"), where / "count")
            window = duration(spec.get("within"), where / "within")
        else:
            least, window = _count(spec, where), 0
        if least > VISIT_MEMORY:
            raise where.error(f"at most {VISIT_MEMORY}: that many recent visits are kept")
        label = f"visits within {span_text(window)}" if window else "visits"

        def visits(f: LeadFacts) -> int:
            return sum(1 for t in f.visit_times if not window or f.now - t <= window)

        return StageCondition(
            lambda f: sum(1 for t in f.visit_times if not window or f.now - t <= window) >= least,
            lambda f: f"{label} {visits(f)} >= {least}",
            VisitWindow(window) if window else None,
        )
    if key in ("active_within", "inactive_for"):
        span = duration(spec, where)
        if key == "active_within":
            return StageCondition(
                lambda f: f.now - f.last_activity <= span,
                lambda f: (
                    f"last active {span_text(f.now - f.last_activity)} ago <= {span_text(span)}"
                ),
                Idle(span),
            )
        return StageCondition(
            lambda f: f.now - f.last_activity >= span,
            lambda f: f"inactive for {span_text(f.now - f.last_activity)} >= {span_text(span)}",
            Idle(span),
        )
    raise where.error(f"unknown condition; allowed here: {', '.join(STAGE_CONDITIONS)}")


VISIT_MEMORY = 10  # visit times kept per lead for `min_visits: {count, within}`


def stage_predicates(
    spec: Any, where: Where, duration: Callable[[Any, Where], int]
) -> tuple[StageCondition, ...]:
    """Compile a stage's `when:` (all must hold); `duration` parses `7d`-style values."""
    if not isinstance(spec, dict) or not spec:
        raise where.error(f"a mapping of conditions; allowed: {', '.join(STAGE_CONDITIONS)}")
    return tuple(_stage_condition(str(k), v, where / str(k), duration) for k, v in spec.items())


def _count(spec: Any, where: Where) -> int:
    if isinstance(spec, bool) or not isinstance(spec, int) or spec < 0:
        raise where.error(f"must be a whole number, got {spec!r}")
    return spec


def _only_keys(spec: dict[str, Any], allowed: set[str], where: Where) -> None:
    for key in spec:
        if key not in allowed:
            raise (where / str(key)).error(f"unknown key; allowed: {', '.join(sorted(allowed))}")
