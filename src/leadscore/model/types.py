"""The validated scoring model as immutable values; the scoring core reads only these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from leadscore.durations import DAY_MS
from leadscore.events import Event, EventType, ProfileKey
from leadscore.model.conditions import (
    AttributePredicate,
    EventPredicate,
    LeadFacts,
    StageCondition,
    Threshold,
    Timer,
    at_least,
)

FIT_MEMORY = 50_000  # attribute sets whose fit is remembered


@dataclass(frozen=True, slots=True)
class Rule:
    """An engagement rule: `points` (negative allowed) for each event matching every
    condition; `once` per lead; exempt from decay unless `decays`; `tags` set on the lead;
    at most `cap_points` (in absolute value) per `cap_window_ms` of event time; with
    `repeat_within_ms`, only for an event that repeats an earlier match (a repeated
    request: another submission of the same form) within that much event time."""

    name: str
    points: float
    conditions: tuple[EventPredicate, ...] = field(repr=False)
    once: bool = False
    decays: bool = True
    tags: tuple[str, ...] = ()
    when: str = ""  # the condition as written, for summaries
    cap_points: float | None = None
    cap_window_ms: int | None = None
    repeat_within_ms: int | None = None  # only a repeat: it matched before, this recently
    types: frozenset[EventType] | None = None  # from `type:`; None: any type
    reads_tags: bool = False  # has a has_tag / lacks_tag condition
    # the scores it counts towards, with its points in each: None is the overall
    # engagement, a name a category
    counts_toward: tuple[tuple[str | None, float], ...] = ()

    def __post_init__(self) -> None:
        if not self.counts_toward:
            object.__setattr__(self, "counts_toward", ((None, self.points),))

    def matches(self, event: Event, tags: frozenset[str]) -> bool:
        for condition in self.conditions:  # noqa: SIM110 (twice as fast as all() on a generator)
            if not condition(event, tags):
                return False
        return True


@dataclass(frozen=True, slots=True)
class FitRule:
    """Fit points (and tags) while a profile attribute passes a test."""

    name: str
    points: float
    condition: AttributePredicate = field(repr=False)
    tags: tuple[str, ...] = ()
    when: str = ""


@dataclass(frozen=True, slots=True)
class Fit:
    """Fit of a set of attributes: total points, per-rule points, and derived tags."""

    points: float
    by_rule: tuple[tuple[str, float], ...]
    tags: frozenset[str]


@dataclass(frozen=True, slots=True)
class Stage:
    """A lifecycle stage, entered while all its conditions hold (the first stage has none).

    A lead is in the last listed stage whose conditions hold. Once a lead reached a stage
    with `keep`, the stages listed before it are no longer candidates: it only moves on.
    """

    name: str
    conditions: tuple[StageCondition, ...] = field(default=(), repr=False)
    keep: bool = False
    when: str = ""
    # how the conditions that time alone can flip do so
    timers: tuple[Timer, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        timers = tuple(c.timer for c in self.conditions if c.timer is not None)
        object.__setattr__(self, "timers", timers)

    def holds_without_time(self, facts: LeadFacts) -> bool:
        """The conditions that time cannot change hold (a stage that fails one of them
        cannot be reached by waiting)."""
        for condition in self.conditions:
            if condition.timer is None and not condition.test(facts):
                return False
        return True

    def holds(self, facts: LeadFacts) -> bool:
        for condition in self.conditions:  # noqa: SIM110 (faster than all())
            if not condition.test(facts):
                return False
        return True

    def why(self, facts: LeadFacts) -> tuple[tuple[str, ...], str]:
        """Why a lead with these facts is in this stage (the stage `Model.stage` chose):
        its conditions that hold, each with the lead's value and the bound (`total 41.5
        >= 40`), and one sentence: those joined with "and", or what put the lead here
        instead: the first stage has no conditions, a `keep` stage holds a lead that
        reached it. Not for the hot path: made only when a transition is published."""
        held = tuple(c.describe(facts) for c in self.conditions if c.test(facts))
        if not self.conditions:
            return held, "no conditions (the first stage): no later stage's conditions hold"
        if len(held) == len(self.conditions):
            return held, " and ".join(held)
        still = f"; still {' and '.join(held)}" if held else ""
        return held, f"kept (keep: reached before): no later stage's conditions hold{still}"


@dataclass(frozen=True, slots=True)
class Category:
    """A score of its own beside the overall one (interest in one product line): its own
    rules, decay, cap and optional levels (named thresholds, highest first)."""

    name: str
    half_life_ms: int
    cap: float | None = None
    levels: tuple[tuple[str, float], ...] = ()
    # a level is a threshold time may cross (decay)
    timers: tuple[Threshold, ...] = field(init=False, repr=False, compare=False)
    _floors: tuple[tuple[str, float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        timers = tuple(Threshold(f"category:{self.name}", bound) for _, bound in self.levels)
        object.__setattr__(self, "timers", timers)
        floors = tuple((name, at_least(bound)) for name, bound in self.levels)
        object.__setattr__(self, "_floors", floors)

    def level(self, value: float) -> str | None:
        """The highest level `value` reaches, if any."""
        for name, lowest in self._floors:
            if value >= lowest:
                return name
        return None


@dataclass(frozen=True, slots=True)
class GradeBands:
    """Lowest value for each band, best band first; below every band is the `fallback`."""

    bands: tuple[tuple[str, float], ...]
    fallback: str
    _floors: tuple[tuple[str, float], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        floors = tuple((name, at_least(bound)) for name, bound in self.bands)
        object.__setattr__(self, "_floors", floors)

    def band(self, value: float) -> str:
        """The first band whose lower bound `value` reaches."""
        for name, lowest in self._floors:
            if value >= lowest:
                return name
        return self.fallback


@dataclass(frozen=True, slots=True)
class Model:
    """A scoring model. `half_life_ms` is the engagement half-life in event time."""

    version: str
    half_life_ms: int
    rules: tuple[Rule, ...]
    engagement_cap: float | None = field(default=None, kw_only=True)
    fit_rules: tuple[FitRule, ...]
    fit_grades: GradeBands
    engagement_grades: GradeBands
    stages: tuple[Stage, ...]
    contact_allowed_by_default: bool = False
    requests: tuple[tuple[EventPredicate, ...], ...] = ()
    responses: tuple[tuple[EventPredicate, ...], ...] = ()
    categories: tuple[Category, ...] = ()
    category_rules: tuple[Rule, ...] = ()  # rules that count towards categories only
    # how far behind the lead's newest event an event may be and still be scored exactly
    # as if it had come in order (what caps, repeats and speed-to-lead remember)
    allowed_lateness_ms: int = field(default=7 * DAY_MS, kw_only=True)
    # the model of anonymous profiles (`for_profile`): the first stage only, no contact
    anonymous: bool = field(default=False, kw_only=True)
    _anonymous_model: Model | None = field(default=None, init=False, repr=False, compare=False)
    _decaying: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    _by_type: Mapping[EventType, tuple[Rule, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )
    _categories: Mapping[str, Category] = field(default_factory=dict, repr=False, compare=False)
    _changes_with_time: bool = field(default=False, repr=False, compare=False)
    _fits: dict[tuple[tuple[str, str], ...], Fit] = field(init=False, repr=False, compare=False)
    _positions: Mapping[str | None, int] = field(init=False, repr=False, compare=False)
    _timers_after: tuple[tuple[Timer, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        every = self.rules + self.category_rules
        object.__setattr__(self, "_decaying", frozenset(r.name for r in every if r.decays))
        by_type = {t: tuple(r for r in every if r.types is None or t in r.types) for t in EventType}
        object.__setattr__(self, "_by_type", by_type)
        object.__setattr__(self, "_categories", {c.name: c for c in self.categories})
        timed = any(s.timers for s in self.stages) or any(c.levels for c in self.categories)
        object.__setattr__(self, "_changes_with_time", timed)
        object.__setattr__(self, "_fits", {})  # never shared by a copy with other fit rules
        object.__setattr__(self, "_positions", {s.name: i for i, s in enumerate(self.stages)})
        after = tuple(
            tuple(t for stage in self.stages[i + 1 :] for t in stage.timers)
            for i in range(len(self.stages))
        )
        object.__setattr__(self, "_timers_after", after)

    def for_profile(self, profile: ProfileKey) -> Model:
        """The model a profile is scored with. An anonymous profile (no lead id) is not a
        prospect yet: it never leaves the first stage and never has contact allowed, and
        scores its engagement, fit and categories like a lead (they carry over when it is
        linked to one)."""
        if profile.is_lead or self.anonymous:
            return self
        if self._anonymous_model is None:
            derived = replace(
                self, stages=self.stages[:1], contact_allowed_by_default=False, anonymous=True
            )
            object.__setattr__(self, "_anonymous_model", derived)
        assert self._anonymous_model is not None
        return self._anonymous_model

    @property
    def changes_with_time(self) -> bool:
        """Some stage condition or category level can change with time alone."""
        return self._changes_with_time

    def rules_for(self, event: Event) -> tuple[Rule, ...]:
        """The rules that can match an event of this type, in model order (engagement
        rules, then category rules)."""
        return self._by_type[event.type]

    def has_category(self, name: str) -> bool:
        return name in self._categories

    def category(self, name: str) -> Category:
        return self._categories[name]

    def decays(self, rule: str) -> bool:
        return rule in self._decaying

    def is_request(self, event: Event) -> bool:
        """The person asked for contact (speed-to-lead starts)."""
        return _any_holds(self.requests, event)

    def is_response(self, event: Event) -> bool:
        """Someone answered the request (speed-to-lead stops)."""
        return _any_holds(self.responses, event)

    def fit(self, attributes: Mapping[str, str]) -> Fit:
        """Fit is a pure function of the lead's known attributes (and `email_domain`),
        remembered for the attribute sets seen last (a lead's rarely change)."""
        key = tuple(attributes.items())
        known = self._fits.get(key)
        if known is not None:
            return known
        derived = with_derived(attributes)
        matched = [r for r in self.fit_rules if r.condition(derived)]
        fit = Fit(
            points=sum((r.points for r in matched), 0.0),
            by_rule=tuple((r.name, r.points) for r in matched),
            tags=frozenset(t for r in matched for t in r.tags),
        )
        if len(self._fits) >= FIT_MEMORY:
            self._fits.clear()
        self._fits[key] = fit
        return fit

    def grade(self, fit: float, engagement: float) -> str:
        """Combined grade: fit band letter then engagement band digit, e.g. `B2`."""
        return self.fit_grades.band(fit) + self.engagement_grades.band(engagement)

    def stage(self, facts: LeadFacts, kept: str | None = None) -> Stage:
        """The last stage whose conditions hold, not before the stage `kept` (the furthest
        `keep` stage the lead reached)."""
        first = self._positions.get(kept, 0)
        stages = self.stages
        for i in range(len(stages) - 1, first, -1):  # from the last: the first that holds
            if stages[i].holds(facts):
                return stages[i]
        return stages[first]

    def timers_after(self, kept: str | None) -> tuple[Timer, ...]:
        """The timers of the stages a lead that reached `kept` can still enter."""
        return self._timers_after[max(self._positions.get(kept, 0), 0)]

    def stage_index(self, name: str | None) -> int:
        """Position of a stage in the model (-1: unknown, e.g. after a model change)."""
        return self._positions.get(name, -1)


_NO_TAGS: frozenset[str] = frozenset()


def _any_holds(whens: tuple[tuple[EventPredicate, ...], ...], event: Event) -> bool:
    for when in whens:
        for condition in when:
            if not condition(event, _NO_TAGS):
                break
        else:
            return True
    return False


def with_derived(attributes: Mapping[str, str]) -> Mapping[str, str]:
    """The attributes plus `email_domain`, taken from `email` when not given."""
    email = attributes.get("email")
    if email and "@" in email and "email_domain" not in attributes:
        return {**attributes, "email_domain": email.rsplit("@", 1)[1].lower()}
    return attributes
