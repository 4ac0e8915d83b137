"""Why a lead has its score: the total as a sum of fit rules and rule contributions (pure).

`explanation` builds the account once, as data; `text_lines` (what `inspect` prints) and
`json_document` (`inspect --json`) are both derived from it, so they cannot disagree.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from leadscore.durations import DAY_MS
from leadscore.events import ProfileKey
from leadscore.model import Model
from leadscore.scoring.state import Change, LeadState
from leadscore.scoring.timeline import lead_facts, next_change

# Bumped when a field of `json_document` changes meaning or goes away (not when one is added).
JSON_FORMAT = 1

# The fields of `json_document`, for `inspect --help` and the docs. Times are epoch
# milliseconds of event time, each beside an ISO 8601 UTC string (`<name>_iso`); scores
# are floats at full precision. No blank line: click prints it as is.
JSON_FIELDS = """\
format int: layout version of this document (1)
found bool: false for an unknown profile (then only lead_id, kind, found; exit status 1)
lead_id str; kind str: "lead" or "anon"
model_version str; half_life_ms int: the engagement half-life
as_of, first_seen, last_activity int + *_iso str: lead clock, first and newest event
events int: events counted; redelivery_memory int: event ids remembered for redelivery
total, fit, engagement float: total = fit + engagement (at as_of)
engagement_decaying, engagement_fixed, engagement_cap float: engagement = decaying part +
  part exempt + cap (zero or negative: what the cap on the total takes off their sum)
grade str; stage str: the model's stage now; stage_why str; stage_conditions [str] held
stage_since int|null + _iso; in_stage_ms int; stored_stage str|null: the stage recorded
  at the last transition; kept_stage str|null: furthest `keep` stage reached
fit_rules [{rule str, points float}]
contributions [{rule str, earned float, worth float, decay float, decays bool}]
categories [{name str, scored bool (has points), value float, level str|null, half_life_ms int,
  engagement_decaying float, engagement_fixed float, engagement_cap float,
  contributions [as above]}]
next_change null | {at int, at_iso str, cause str, stage str, stage_why str}
tags [str]; counts {name: int}; fired {once-rule: event time}; visits [event time]
speed_to_lead_ms int|null; first_request_at, first_response_at int|null + _iso
consent null | {contact_allowed bool, at int, at_iso str}
attributes {name: {value str, at int, at_iso str}}
published {total float, fit float, grade str|null, contact bool|null, tags [str],
  speed_to_lead_ms int|null}: what the last output said
recent_changes [{at int, at_iso str, total float, delta float, stage str,
  reasons [{rule str, points float}], cause_event_id str}], newest first, figures
  as stored (in hundredths)
store {version int, watermarks [{topic str, partition int, offset int}],
  schedule {topic str, partition int}|null, pending_outputs int}"""


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one rule earned the lead, and what that is worth at the lead's clock."""

    rule: str
    earned: float
    worth: float
    decays: bool = True

    @property
    def decay(self) -> float:
        """What decay took (negative) since the points were earned."""
        return self.worth - self.earned


@dataclass(frozen=True, slots=True)
class CategoryView:
    """One of the model's categories as the lead stands in it (`scored`: it has points)."""

    name: str
    half_life_ms: int
    scored: bool
    value: float
    level: str | None
    decaying: float
    fixed: float
    cap: float  # zero or negative: what the category's cap takes off
    contributions: tuple[Contribution, ...]


@dataclass(frozen=True, slots=True)
class NextChange:
    """The next time-driven change: when, its cause, and the stage it leads to (and why)."""

    at: int
    cause: str
    stage: str
    why: str


@dataclass(frozen=True, slots=True)
class Published:
    """What the lead's last output said (the next output reports its delta from this)."""

    total: float
    fit: float
    grade: str | None
    contact: bool | None
    tags: tuple[str, ...]
    speed_to_lead_ms: int | None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything `inspect` tells about a profile, as data. `total` = `fit` + `engagement`
    and `engagement` = `decaying` + `fixed` + `cap` = the sum of the contributions'
    `worth` + `cap` (zero or negative: what the cap on the total takes off);
    `stage` is the model's stage for the state now, `stored_stage` the one last recorded.
    Contributions are by decreasing weight, attributes by name, changes newest first."""

    profile: ProfileKey
    model_version: str
    half_life_ms: int
    as_of: int
    first_seen: int
    last_activity: int
    events: int
    redelivery_memory: int
    total: float
    fit: float
    engagement: float
    decaying: float
    fixed: float
    cap: float
    grade: str
    stage: str
    stage_why: str
    stage_conditions: tuple[str, ...]
    stage_since: int | None
    in_stage_ms: int
    stored_stage: str | None
    kept_stage: str | None
    fit_rules: tuple[tuple[str, float], ...]
    contributions: tuple[Contribution, ...]
    categories: tuple[CategoryView, ...]
    next_change: NextChange | None
    tags: tuple[str, ...]
    counts: Mapping[str, int]
    fired: Mapping[str, int]
    visits: tuple[int, ...]
    speed_to_lead_ms: int | None
    first_request_at: int | None
    first_response_at: int | None
    consent: tuple[bool, int] | None
    attributes: tuple[tuple[str, str, int], ...]  # (name, value, event time it was set)
    published: Published
    recent_changes: tuple[Change, ...]


def explanation(profile: ProfileKey, state: LeadState, model: Model) -> Explanation:
    """The account of a lead's state under `model`: every number adds up to the total."""
    model = model.for_profile(profile)
    facts, fit = lead_facts(state, model)
    stage = model.stage(facts, state.kept)
    conditions, why = stage.why(facts)
    due = next_change(state, model)
    coming = None
    if due is not None:
        later, _ = lead_facts(state, model, due.at)
        next_stage = model.stage(later, state.kept)
        coming = NextChange(due.at, due.cause, next_stage.name, next_stage.why(later)[1])
    return Explanation(
        profile=profile,
        model_version=model.version,
        half_life_ms=model.half_life_ms,
        as_of=state.as_of,
        first_seen=state.first_seen,
        last_activity=state.last_activity,
        events=state.events,
        redelivery_memory=len(state.recent),
        total=facts.total,
        fit=fit.points,
        engagement=facts.engagement,
        decaying=state.engagement,
        fixed=state.fixed,
        cap=facts.engagement - (state.engagement + state.fixed),
        grade=model.grade(fit.points, facts.engagement),
        stage=stage.name,
        stage_why=why,
        stage_conditions=conditions,
        stage_since=state.stage_since,
        in_stage_ms=state.as_of - state.stage_since if state.stage_since is not None else 0,
        stored_stage=state.stage,
        kept_stage=state.kept,
        fit_rules=fit.by_rule,
        contributions=_contributions(state.contributions, model),
        categories=tuple(
            _category(state, model, facts.categories, c.name) for c in model.categories
        ),
        next_change=coming,
        tags=tuple(sorted(facts.tags)),
        counts=dict(state.counts),
        fired=dict(state.fired),
        visits=tuple(state.visits),
        speed_to_lead_ms=state.speed_to_lead_ms,
        first_request_at=state.first_request_at,
        first_response_at=state.first_response_at,
        consent=state.consent,
        attributes=tuple((k, v, at) for k, (v, at) in sorted(state.attributes.items())),
        published=Published(
            state.published_total,
            state.published_fit,
            state.published_grade,
            state.published_contact,
            state.published_tags,
            state.published_speed,
        ),
        recent_changes=tuple(reversed(state.history)),
    )


def _contributions(
    by_rule: Mapping[str, tuple[float, float]], model: Model
) -> tuple[Contribution, ...]:
    """Heaviest now first (ties by name)."""
    return tuple(
        Contribution(name, earned, worth, model.decays(name))
        for name, (earned, worth) in sorted(by_rule.items(), key=lambda i: (-abs(i[1][1]), i[0]))
    )


def _category(
    state: LeadState, model: Model, values: Mapping[str, float], name: str
) -> CategoryView:
    category = model.category(name)
    score = state.categories.get(name)
    if score is None:
        return CategoryView(name, category.half_life_ms, False, 0.0, None, 0.0, 0.0, 0.0, ())
    value = values[name]
    return CategoryView(
        name,
        category.half_life_ms,
        True,
        value,
        category.level(value),
        score.engagement,
        score.fixed,
        value - (score.engagement + score.fixed),
        _contributions(score.contributions, model),
    )


def explain(profile: ProfileKey, state: LeadState, model: Model) -> list[str]:
    """A readable account of a lead's state: every number adds up to the total."""
    return text_lines(explanation(profile, state, model))


def text_lines(e: Explanation) -> list[str]:
    """The explanation as `inspect` prints it (figures rounded to a tenth)."""
    lines = [
        f"{e.profile.kind} {e.profile.id} · model {e.model_version} · as of {_when(e.as_of)} "
        f"(event time) · {e.events} events since {_when(e.first_seen)}",
        f"total {e.total:.1f} = fit {e.fit:.1f} + engagement {e.engagement:.1f} · "
        f"grade {e.grade} · stage {e.stage} for {_duration(e.in_stage_ms)}",
        f"in stage {e.stage} because: {e.stage_why}",
        f"fit {e.fit:.1f}:",
    ]
    lines += [f"  {points:+8.1f}  {name}" for name, points in e.fit_rules] or ["  (no rule)"]
    lines.append(
        f"engagement {e.engagement:.1f} (half-life {e.half_life_ms / DAY_MS:g} days): "
        "points earned, what they are worth now, and what decay took"
    )
    lines += [_contribution_line(c) for c in e.contributions] or ["  (no rule)"]
    lines += _cap_line(e.cap)
    for category in e.categories:
        if not category.scored:
            lines.append(f"category {category.name}: 0.0 (no points yet)")
            continue
        lines.append(
            f"category {category.name}: {category.value:.1f}"
            + (f" · level {category.level}" if category.level else "")
            + f" (half-life {category.half_life_ms / DAY_MS:g} days)"
        )
        lines += [_contribution_line(c) for c in category.contributions]
        lines += _cap_line(category.cap)
    if e.next_change is not None:
        due = e.next_change
        lines.append(
            f"next change without new events: {_when(due.at)} ({due.cause}): stage "
            f"{due.stage} because: {due.why}"
        )
    consent = (
        "no (an anonymous profile is not contacted)"
        if not e.profile.is_lead
        else "unknown"
        if e.consent is None
        else (f"{'yes' if e.consent[0] else 'no'} (consent of {_when(e.consent[1])})")
    )
    speed = e.speed_to_lead_ms
    lines += [
        f"tags: {', '.join(e.tags) or 'none'} · speed-to-lead: "
        f"{_duration(speed) if speed is not None else 'no response yet'} · "
        f"contact allowed: {consent}",
        "attributes: " + (", ".join(f"{k}={v}" for k, v, _ in e.attributes) or "none"),
        "recent changes (newest first):",
    ]
    for change in e.recent_changes:
        reasons = ", ".join(f"{rule} {points:+.1f}" for rule, points in change.reasons)
        lines.append(
            f"  {_when(change.as_of)}  {change.delta:+7.1f} -> {change.total:7.1f} "
            f"{change.stage:<14} {reasons}  (cause {change.cause_event_id})"
        )
    return lines


def json_document(e: Explanation) -> dict[str, object]:
    """The explanation as one JSON-ready mapping, fields as in `JSON_FIELDS` (every float
    at full precision; the storage part, `store`, is added by the caller that read it)."""
    return {
        "format": JSON_FORMAT,
        "found": True,
        "lead_id": e.profile.id,
        "kind": e.profile.kind,
        "model_version": e.model_version,
        "half_life_ms": e.half_life_ms,
        **_time("as_of", e.as_of),
        **_time("first_seen", e.first_seen),
        **_time("last_activity", e.last_activity),
        "events": e.events,
        "redelivery_memory": e.redelivery_memory,
        "total": e.total,
        "fit": e.fit,
        "engagement": e.engagement,
        "engagement_decaying": e.decaying,
        "engagement_fixed": e.fixed,
        "engagement_cap": e.cap,
        "grade": e.grade,
        "stage": e.stage,
        "stage_why": e.stage_why,
        "stage_conditions": list(e.stage_conditions),
        **_time("stage_since", e.stage_since),
        "in_stage_ms": e.in_stage_ms,
        "stored_stage": e.stored_stage,
        "kept_stage": e.kept_stage,
        "fit_rules": [{"rule": rule, "points": points} for rule, points in e.fit_rules],
        "contributions": [_contribution(c) for c in e.contributions],
        "categories": [
            {
                "name": c.name,
                "scored": c.scored,
                "value": c.value,
                "level": c.level,
                "half_life_ms": c.half_life_ms,
                "engagement_decaying": c.decaying,
                "engagement_fixed": c.fixed,
                "engagement_cap": c.cap,
                "contributions": [_contribution(r) for r in c.contributions],
            }
            for c in e.categories
        ],
        "next_change": None
        if e.next_change is None
        else {
            **_time("at", e.next_change.at),
            "cause": e.next_change.cause,
            "stage": e.next_change.stage,
            "stage_why": e.next_change.why,
        },
        "tags": list(e.tags),
        "counts": dict(e.counts),
        "fired": dict(e.fired),
        "visits": list(e.visits),
        "speed_to_lead_ms": e.speed_to_lead_ms,
        **_time("first_request_at", e.first_request_at),
        **_time("first_response_at", e.first_response_at),
        "consent": None
        if e.consent is None
        else {"contact_allowed": e.consent[0], **_time("at", e.consent[1])},
        "attributes": {name: {"value": v, **_time("at", at)} for name, v, at in e.attributes},
        "published": {
            "total": e.published.total,
            "fit": e.published.fit,
            "grade": e.published.grade,
            "contact": e.published.contact,
            "tags": list(e.published.tags),
            "speed_to_lead_ms": e.published.speed_to_lead_ms,
        },
        "recent_changes": [
            {
                **_time("at", change.as_of),
                "total": change.total,
                "delta": change.delta,
                "stage": change.stage,
                "reasons": [{"rule": rule, "points": points} for rule, points in change.reasons],
                "cause_event_id": change.cause_event_id,
            }
            for change in e.recent_changes
        ],
    }


def iso_time(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC, to the millisecond (`2024-05-01T09:30:00.250Z`)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(name: str, ms: int | None) -> dict[str, object]:
    return {name: ms, f"{name}_iso": None if ms is None else iso_time(ms)}


def _contribution(c: Contribution) -> dict[str, object]:
    return {
        "rule": c.rule,
        "earned": c.earned,
        "worth": c.worth,
        "decay": c.decay,
        "decays": c.decays,
    }


def _cap_line(cap: float) -> list[str]:
    """What a cap on the total takes off the sum of the contributions, if anything."""
    return [f"  {'':8}  now {cap:+8.1f}  {'':13}  cap (on the total)"] if cap else []


def _contribution_line(c: Contribution) -> str:
    note = "" if c.decays else "  (no decay)"
    return f"  {c.earned:+8.1f}  now {c.worth:+8.1f}  decay {c.decay:+7.1f}  {c.rule}{note}"


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def _duration(ms: int) -> str:
    seconds = ms / 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"
