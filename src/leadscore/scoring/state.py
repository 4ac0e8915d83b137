"""The per-profile state the core folds events into."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def event_digest(event_id: str) -> bytes:
    """A short, fixed-size fingerprint of an event id for the redelivery memory.

    64 bits: the chance of two of a lead's last few hundred ids colliding is ~1e-15.
    """
    return hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest()


@dataclass(slots=True)
class Change:
    """One published score change: when, why, and by how much, in hundredths of a point
    (what `inspect` explains; the outputs themselves carry every digit). Stored as whole
    hundredths: a few bytes each instead of a double's eight, which do not compress.

    Never modified once made, nor copied with changes (`dataclasses.replace` would carry
    `packed` over): the store packs a change once and reuses the bytes."""

    as_of: int
    cause_event_id: str
    total: float
    delta: float
    stage: str
    reasons: tuple[tuple[str, float], ...]
    # not state: the change as the store packs it, but its time (see state/encoding.py)
    packed: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class CategoryScore:
    """One category's score, kept like the overall engagement: the decaying part at the
    lead's clock, the part exempt from decay, per rule what it earned and is worth now,
    the points earned since the last output, and what that output said."""

    engagement: float = 0.0
    fixed: float = 0.0
    contributions: dict[str, tuple[float, float]] = field(default_factory=dict)
    pending: dict[str, float] = field(default_factory=dict)
    published: float = 0.0
    published_level: str | None = None
    published_clip: float = 0.0  # what the category's cap took off the published value

    def copy(self) -> CategoryScore:
        return CategoryScore(
            self.engagement,
            self.fixed,
            dict(self.contributions),
            dict(self.pending),
            self.published,
            self.published_level,
            self.published_clip,
        )


@dataclass(slots=True)
class LeadState:
    """Everything the worker remembers about one profile.

    `as_of` is the lead's clock: the newest event time folded in, or the time of a
    time-driven change after it; `last_activity` is the newest event time. `engagement` is
    the decaying engagement score at `as_of` and `fixed` the points of rules exempt from
    decay, both before the model's cap on the total (which is applied when they are read,
    so that where the cap clips does not depend on the order of events); `tags` are those
    set by engagement rules (sticky; fit tags are derived from the attributes) and `fired`
    the once-per-lead rules that already counted, with the time of the event that did.
    `caps` holds, per capped rule, the points it earned in each window of event time within
    the allowed lateness; `matched`, per `repeat_within` rule, its matches within the
    allowed lateness as (event time, tie-break, credited). `counts` counts requests, forms
    and answered calls, `visits` holds the last visit times, and `kept` is the furthest
    `keep` stage reached. `early_responses` are responses (speed-to-lead) earlier than the
    first request, which an earlier request arriving late may make the first response.
    `contributions` maps each rule to (points earned, what they are worth at `as_of`): the
    engagement is the sum of the second column. `history` keeps the last published
    changes, newest last.
    `attributes` maps a profile attribute to (value, event time it was set), so that the
    latest value wins by event time, not by arrival order. The `published_*` fields are
    what the last output said, so the next output can report a delta and its reasons;
    `pending` holds rule points earned since then, decayed to `as_of` like `engagement`;
    `published_clip` is what the cap took off the published engagement.
    `categories` holds the scores of the model's categories the lead earned points in.
    """

    engagement: float = 0.0
    fixed: float = 0.0
    as_of: int = 0
    last_activity: int = 0
    first_seen: int = 0
    events: int = 0
    attributes: dict[str, tuple[str, int]] = field(default_factory=dict)
    consent: tuple[bool, int] | None = None
    stage: str | None = None
    stage_since: int | None = None
    published_total: float = 0.0
    published_fit: float = 0.0
    published_grade: str | None = None
    published_contact: bool | None = None
    pending: dict[str, float] = field(default_factory=dict)
    recent: list[bytes] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)
    fired: dict[str, int] = field(default_factory=dict)
    caps: dict[str, dict[int, float]] = field(default_factory=dict)
    matched: dict[str, list[tuple[int, int, bool]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    visits: list[int] = field(default_factory=list)
    kept: str | None = None
    contributions: dict[str, tuple[float, float]] = field(default_factory=dict)
    history: list[Change] = field(default_factory=list)
    first_request_at: int | None = None
    first_response_at: int | None = None
    early_responses: list[int] = field(default_factory=list)
    published_clip: float = 0.0
    published_tags: tuple[str, ...] = ()
    published_speed: int | None = None
    categories: dict[str, CategoryScore] = field(default_factory=dict)
    # not state: the fit of `attributes` as last computed (None: compute it again)
    fit_memo: object = field(default=None, compare=False, repr=False)
    # not state: (model, the next time-driven change) as last computed by `next_change`;
    # whatever changes the state sets it to None
    due_memo: object = field(default=None, compare=False, repr=False)

    @property
    def speed_to_lead_ms(self) -> int | None:
        """Event time from the first request to the first response at or after it."""
        if self.first_request_at is None or self.first_response_at is None:
            return None
        return self.first_response_at - self.first_request_at

    def attribute_values(self) -> dict[str, str]:
        """The current value of every known attribute."""
        return {name: value for name, (value, _) in self.attributes.items()}
