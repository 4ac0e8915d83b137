"""Typed input events: what the scoring core sees after decoding and validation.

Events are made per input message, so they are plain slots dataclasses: a frozen one
costs five times as much to build. Nothing changes an event once decoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple


class EventType(StrEnum):
    """The four kinds of input, one per input topic."""

    CLICK = "click"
    VISIT = "visit"
    FORM = "form"
    CALL = "call"


@dataclass(slots=True)
class Source:
    channel: str
    campaign: str | None = None
    medium: str | None = None
    referrer: str | None = None


@dataclass(slots=True)
class Consent:
    marketing: bool
    contact: bool


@dataclass(slots=True)
class Event:
    """One validated input event.

    Fields common to every type come first; the type-specific ones are optional and set
    only for their type (a `Call` has `direction`, a `FormSubmission` has `form_id`, ...).
    """

    type: EventType
    event_id: str
    occurred_at: int
    lead_id: str | None
    anonymous_id: str | None
    source: Source | None = None
    device: str | None = None
    user_agent: str | None = None
    traits: dict[str, str] = field(default_factory=dict)
    # click, visit, form
    url: str | None = None
    # click
    target_url: str | None = None
    ad_id: str | None = None
    # visit
    title: str | None = None
    session_id: str | None = None
    duration_ms: int | None = None
    # form
    form_id: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    fill_duration_ms: int | None = None
    completed_by: str | None = None
    consent: Consent | None = None
    # call
    call_id: str | None = None
    direction: str | None = None
    tracking_number: str | None = None
    duration_s: int | None = None
    answered: bool | None = None
    outcome: str | None = None

    @property
    def profile_key(self) -> ProfileKey:
        """The profile this event scores: the lead if known, else the anonymous profile."""
        if self.lead_id:
            return ProfileKey("lead", self.lead_id)
        assert self.anonymous_id is not None
        return ProfileKey("anon", self.anonymous_id)


class ProfileKey(NamedTuple):
    """A scored profile: a known lead (`lead`) or an anonymous visitor (`anon`).

    A named tuple: it is a dict key everywhere, and hashes several times faster than a
    frozen dataclass."""

    kind: str
    id: str

    @property
    def is_lead(self) -> bool:
        return self.kind == "lead"


class Positioned(NamedTuple):
    """A decoded event and the input position (topic, partition) and offset it came from."""

    event: Event
    partition: tuple[str, int]
    offset: int
