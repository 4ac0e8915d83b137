"""Avro binary encoding of the two output records, written out by hand.

The output schemas are ours and fixed, so their encoding is a straight sequence of
fields: this is several times faster than building a dict for a generic encoder
(measured: 6 µs per output instead of 34 with `dataclasses.asdict` + fastavro). A unit
test checks that every output encodes to the bytes fastavro writes for the same record.

Avro binary: int and long are zig-zag varints; a double is 8 bytes little-endian; a
string is its UTF-8 length then its bytes; a union is the branch index then the value;
an array is blocks of (count, items) ended by a zero count.
"""

from __future__ import annotations

import struct

from leadscore.scoring.outputs import CategoryChange, Reason, ScoreChanged, StageTransitioned

_double = struct.Struct("<d").pack
_NULL = b"\x00"
_FALSE, _TRUE = b"\x00", b"\x01"
_END = b"\x00"  # an array's closing block (also an empty array)


def _long(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return _long(len(raw)) + raw


_NAMES: dict[str, bytes] = {}
_MAX_NAMES = 10_000


def _name(s: str) -> bytes:
    """A string from the model (a rule, stage, grade, tag, category or level name, the
    model version): a few dozen, encoded once each."""
    encoded = _NAMES.get(s)
    if encoded is None:
        if len(_NAMES) >= _MAX_NAMES:  # only a model edited very often gets here
            _NAMES.clear()
        encoded = _NAMES[s] = _string(s)
    return encoded


def _optional_string(s: str | None) -> bytes:
    return _NULL if s is None else b"\x02" + _string(s)


def _optional_name(s: str | None) -> bytes:
    return _NULL if s is None else b"\x02" + _name(s)


def _optional_long(n: int | None) -> bytes:
    return _NULL if n is None else b"\x02" + _long(n)


def _strings(strings: tuple[str, ...]) -> bytes:
    if not strings:
        return _END
    return _long(len(strings)) + b"".join(_string(s) for s in strings) + _END


def _reasons(reasons: tuple[Reason, ...]) -> bytes:
    if not reasons:
        return _END
    parts = [_long(len(reasons))]
    for reason in reasons:
        parts.append(_name(reason.rule))
        parts.append(_double(reason.points))
    parts.append(_END)
    return b"".join(parts)


def _categories(categories: tuple[CategoryChange, ...]) -> bytes:
    if not categories:
        return _END
    parts = [_long(len(categories))]
    for c in categories:
        parts += (
            _name(c.name),
            _double(c.value),
            _double(c.delta),
            _optional_name(c.level),
            _reasons(c.reasons),
        )
    parts.append(_END)
    return b"".join(parts)


def _head(output: ScoreChanged | StageTransitioned, emitted_at: int) -> list[bytes]:
    profile = output.profile
    lead = profile.kind == "lead"
    return [
        _string(output.event_id),
        _optional_string(profile.id if lead else None),
        _optional_string(None if lead else profile.id),
        _long(output.occurred_at),
        _long(output.as_of),
        _long(emitted_at),
        _name(output.model_version),
        _string(output.cause_event_id),
    ]


def score_changed(output: ScoreChanged, emitted_at: int) -> bytes:
    parts = _head(output, emitted_at)
    tags = output.tags
    parts += (
        _double(output.fit),
        _double(output.engagement),
        _double(output.total),
        _double(output.previous_total),
        _double(output.delta),
        _name(output.grade),
        _name(output.stage),
        _reasons(output.reasons),
        _TRUE if output.contact_allowed else _FALSE,
        _optional_long(output.speed_to_lead_ms),
        (_long(len(tags)) + b"".join(_name(t) for t in tags) + _END) if tags else _END,
        _categories(output.categories),
    )
    return b"".join(parts)


def stage_transitioned(output: StageTransitioned, emitted_at: int) -> bytes:
    parts = _head(output, emitted_at)
    parts += (
        _optional_name(output.from_stage),
        _name(output.to_stage),
        _name(output.reason),
        _double(output.fit),
        _double(output.engagement),
        _double(output.total),
        _optional_long(output.time_in_previous_stage_ms),
        _optional_long(output.inactive_for_ms),
        _strings(output.conditions),
        _optional_string(output.explanation),
    )
    return b"".join(parts)
