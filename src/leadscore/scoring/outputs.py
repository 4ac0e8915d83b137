"""Output events of the core, with ids that are a function of their cause.

Plain slots dataclasses (not frozen: several are made per event, and a frozen one costs
five times as much to build); nothing changes an output once made."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Literal

from leadscore.events import ProfileKey

OutputKind = Literal["score_changed", "stage_transitioned"]

_ID_NAMESPACE = uuid.UUID("6c2b1f0e-5d1a-4d8e-9a41-2f1c8c3e7b55")
_NAMESPACE_BYTES = _ID_NAMESPACE.bytes
_sha1 = hashlib.sha1


def output_id(profile: ProfileKey, cause_event_id: str, kind: OutputKind, index: int) -> str:
    """Deterministic id: a replay of the same cause republishes the same id.

    The UUID version 5 of the name in our namespace (`uuid.uuid5`, whose UUID object
    costs twice as much as the hash: this makes the same string from the digest)."""
    name = f"{profile.kind}/{profile.id}/{cause_event_id}/{kind}/{index}"
    digest = bytearray(_sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(slots=True)
class Cause:
    """What made outputs: an input event, or a time-driven change (`trigger` says which:
    `inactivity` or `decay`) due at `occurred_at`, whose id is derived from that time."""

    event_id: str
    occurred_at: int
    trigger: str | None = None

    @staticmethod
    def due(at: int, trigger: str) -> Cause:
        return Cause(f"time:{at}", at, trigger)


@dataclass(slots=True)
class Reason:
    rule: str
    points: float


@dataclass(slots=True)
class CategoryChange:
    """A category's score in a ScoreChanged: its value, the change since the last output,
    its level (if the category has levels) and why it moved."""

    name: str
    value: float
    delta: float
    level: str | None
    reasons: tuple[Reason, ...]


@dataclass(slots=True)
class ScoreChanged:
    event_id: str
    profile: ProfileKey
    occurred_at: int
    as_of: int
    model_version: str
    cause_event_id: str
    fit: float
    engagement: float
    total: float
    previous_total: float
    delta: float
    grade: str
    stage: str
    reasons: tuple[Reason, ...]
    contact_allowed: bool
    speed_to_lead_ms: int | None = None
    tags: tuple[str, ...] = ()
    categories: tuple[CategoryChange, ...] = ()

    kind: OutputKind = "score_changed"


@dataclass(slots=True)
class StageTransitioned:
    event_id: str
    profile: ProfileKey
    occurred_at: int
    as_of: int
    model_version: str
    cause_event_id: str
    from_stage: str | None
    to_stage: str
    reason: str
    fit: float
    engagement: float
    total: float
    time_in_previous_stage_ms: int | None
    inactive_for_ms: int | None = None
    # why the lead is in `to_stage` at `as_of` (see `Stage.why`): the stage's conditions
    # that held, each with the lead's value and the bound, and one sentence
    conditions: tuple[str, ...] = ()
    explanation: str | None = None

    kind: OutputKind = "stage_transitioned"


Output = ScoreChanged | StageTransitioned
