"""What the store keeps, as bytes: the state (compact JSON with short keys) and the outputs
of the last write (length-prefixed Avro records), so that a replay can publish them again."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from leadscore.scoring.state import CategoryScore, Change, LeadState


def encode_state(state: LeadState) -> bytes:
    doc: dict[str, Any] = {
        "e": state.engagement,
        "t": state.as_of,
        "f": state.first_seen,
        "n": state.events,
        "a": state.attributes,
        "st": state.stage,
        "ss": state.stage_since,
        "pt": state.published_total,
        "pf": state.published_fit,
        "pg": state.published_grade,
        "r": state.recent,
    }
    if state.consent is not None:
        doc["c"] = state.consent
    if state.published_contact is not None:
        doc["pc"] = state.published_contact
    if state.pending:
        doc["p"] = state.pending
    if state.fixed:
        doc["x"] = state.fixed
    if state.tags:
        doc["g"] = sorted(state.tags)
    if state.fired:
        doc["o"] = state.fired
    if state.contributions:
        doc["cb"] = state.contributions
    if state.history:
        doc["h"] = [
            [c.as_of, c.cause_event_id, c.total, c.delta, c.stage, c.reasons] for c in state.history
        ]
    if state.counts:
        doc["ct"] = state.counts
    if state.visits:
        doc["vt"] = state.visits
    if state.kept is not None:
        doc["kp"] = state.kept
    if state.matched:
        doc["m"] = state.matched
    if state.caps:
        doc["k"] = {r: {str(w): u for w, u in used.items()} for r, used in state.caps.items()}
    if state.first_request_at is not None:
        doc["rq"] = state.first_request_at
    if state.first_response_at is not None:
        doc["rs"] = state.first_response_at
    if state.published_tags:
        doc["pt2"] = state.published_tags
    if state.published_speed is not None:
        doc["ps"] = state.published_speed
    if state.last_activity != state.as_of:
        doc["la"] = state.last_activity
    if state.categories:
        doc["cat"] = {
            name: [
                c.engagement,
                c.fixed,
                c.published,
                c.published_level,
                c.pending,
                c.contributions,
            ]
            for name, c in state.categories.items()
        }
    return orjson.dumps(doc)


def decode_state(raw: bytes) -> LeadState:
    doc = orjson.loads(raw)
    consent = doc.get("c")
    return LeadState(
        engagement=doc["e"],
        as_of=doc["t"],
        first_seen=doc["f"],
        events=doc["n"],
        attributes={k: (v[0], v[1]) for k, v in doc["a"].items()},
        consent=(consent[0], consent[1]) if consent else None,
        stage=doc["st"],
        stage_since=doc["ss"],
        published_total=doc["pt"],
        published_fit=doc["pf"],
        published_grade=doc["pg"],
        published_contact=doc.get("pc"),
        pending=doc.get("p", {}),
        recent=doc["r"],
        fixed=doc.get("x", 0.0),
        tags=set(doc.get("g", ())),
        fired=dict(doc.get("o", {})),
        caps={r: {int(w): u for w, u in used.items()} for r, used in doc.get("k", {}).items()},
        contributions={r: (v[0], v[1]) for r, v in doc.get("cb", {}).items()},
        history=[
            Change(h[0], h[1], h[2], h[3], h[4], tuple((r, p) for r, p in h[5]))
            for h in doc.get("h", [])
        ],
        matched={r: list(ts) for r, ts in doc.get("m", {}).items()},
        counts=dict(doc.get("ct", {})),
        visits=list(doc.get("vt", [])),
        kept=doc.get("kp"),
        first_request_at=doc.get("rq"),
        first_response_at=doc.get("rs"),
        published_tags=tuple(doc.get("pt2", ())),
        published_speed=doc.get("ps"),
        last_activity=doc.get("la", doc["t"]),
        categories={
            name: CategoryScore(
                c[0], c[1], {r: (v[0], v[1]) for r, v in c[5].items()}, c[4], c[2], c[3]
            )
            for name, c in doc.get("cat", {}).items()
        },
    )


class StoredOutput(NamedTuple):
    """An encoded output and the offset of the input event that caused it."""

    cause_offset: int
    kind: str
    value: bytes


_KINDS = ("score_changed", "stage_transitioned")
_OUTPUT_HEADER = struct.Struct(">qBI")  # cause offset, kind, value length


def encode_outputs(outputs: Sequence[StoredOutput]) -> bytes:
    parts = []
    for output in outputs:
        parts.append(
            _OUTPUT_HEADER.pack(output.cause_offset, _KINDS.index(output.kind), len(output.value))
        )
        parts.append(output.value)
    return b"".join(parts)


def decode_outputs(raw: bytes) -> list[StoredOutput]:
    outputs, position = [], 0
    while position < len(raw):
        offset, kind, length = _OUTPUT_HEADER.unpack_from(raw, position)
        position += _OUTPUT_HEADER.size
        outputs.append(StoredOutput(offset, _KINDS[kind], raw[position : position + length]))
        position += length
    return outputs
