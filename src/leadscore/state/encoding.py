"""What the store keeps, as bytes: the state (a compact msgpack array, compressed with
zstd and a dictionary shipped with leadscore) and the outputs of the last write
(length-prefixed Avro records), so that a replay can publish them again.

Why a dictionary: a state is a few hundred bytes, too little for a compressor to learn
from, but most of it is names (attributes, rules, stages, categories) and numbers that
every state shares. A dictionary trained on simulated states (`bench/state_dictionary.py`)
holds them: measured, 763 -> about 330 bytes for 3 us of CPU per write. A dictionary is
never changed: a new one gets a new id. Only what this version writes is read (dictionary
`DICTIONARY`, history figures in whole hundredths); any other state is a clear error.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]
import zstandard

from leadscore.errors import LeadscoreError
from leadscore.scoring.state import CategoryScore, Change, LeadState

COMPACT = b"\x01"  # the first byte of a compact state
COMPRESSED = b"\x02"  # then the dictionary's id (a byte), then a zstd frame of a compact one
DICTIONARY = 2  # the id of the dictionary new states are compressed with
ZSTD_LEVEL = 3  # measured: level 6 saves 5% more bytes for 3x the CPU


def encode_state(state: LeadState) -> bytes:
    """The state as stored: its compact encoding, compressed."""
    return _COMPRESSED_HEADER + _zstd().compressor.compress(encode_compact(state))


def decode_state(raw: bytes) -> LeadState:
    """What `encode_state` wrote; anything else raises `LeadscoreError`."""
    if raw[:2] != _COMPRESSED_HEADER:
        raise LeadscoreError(_unreadable(raw))
    return _decode_compact(_zstd().decompressor.decompress(raw[2:]))


def _unreadable(raw: bytes) -> str:
    if raw[:1] != COMPRESSED or len(raw) < 2:
        return f"a stored state starts with {raw[:2]!r}, which is not a state leadscore writes"
    if raw[1] > DICTIONARY:
        return (
            f"a stored state is compressed with dictionary {raw[1]}, which this version of "
            "leadscore does not have: it was written by a newer version"
        )
    return (
        f"a stored state is compressed with dictionary {raw[1]}, which no release of "
        f"leadscore wrote: states are compressed with dictionary {DICTIONARY}"
    )


def encode_compact(state: LeadState) -> bytes:
    """The state as a msgpack array of its fields in a fixed order (no names), times
    relative to the lead's clock (small numbers, short encodings), the redelivery memory
    as one byte string, the history's figures in whole hundredths.

    The array is assembled from three packed parts: the fields before the history, the
    history (each entry but its time packed once, when first written: the history was
    more than half of the time spent here), and the fields after it. The bytes are those
    of the whole array packed at once."""
    t = state.as_of
    head = _pack(
        [
            t,
            state.engagement,
            state.fixed,
            t - state.last_activity,
            t - state.first_seen,
            state.events,
            [x for name, (value, at) in state.attributes.items() for x in (name, value, t - at)],
            None if state.consent is None else [state.consent[0], t - state.consent[1]],
            state.stage,
            None if state.stage_since is None else t - state.stage_since,
            state.published_total,
            state.published_fit,
            state.published_grade,
            state.published_contact,
            _flat(state.pending),
            b"".join(state.recent),
            sorted(state.tags),
            [x for rule, at in state.fired.items() for x in (rule, t - at)],
            [x for rule, used in state.caps.items() for x in (rule, _windows(used))],
            [
                x
                for rule, matches in state.matched.items()
                for x in (rule, [y for at, order, hit in matches for y in (t - at, order, hit)])
            ],
            _flat(state.counts),
            [t - v for v in state.visits],
            state.kept,
            [
                x
                for rule, (earned, worth) in state.contributions.items()
                for x in (rule, earned, worth)
            ],
        ]
    )
    tail = _pack(
        [
            None if state.first_request_at is None else t - state.first_request_at,
            None if state.first_response_at is None else t - state.first_response_at,
            list(state.published_tags),
            state.published_speed,
            [t - r for r in state.early_responses],
            state.published_clip,
            [
                x
                for name, c in state.categories.items()
                for x in (
                    name,
                    c.engagement,
                    c.fixed,
                    c.published,
                    c.published_level,
                    c.published_clip,
                    _flat(c.pending),
                    [
                        y
                        for rule, (earned, worth) in c.contributions.items()
                        for y in (rule, earned, worth)
                    ],
                )
            ],
        ]
    )
    return b"".join(
        (
            COMPACT,
            _STATE_HEADER,
            head[len(_HEAD_HEADER) :],
            _history(t, state.history),
            tail[len(_TAIL_HEADER) :],
        )
    )


_array_header = msgpack.Packer(autoreset=True).pack_array_header
_HEAD_FIELDS = 24  # the fields before the history
_TAIL_FIELDS = 7  # the fields after it
_HEAD_HEADER = _array_header(_HEAD_FIELDS)  # what packing each part alone put before it
_TAIL_HEADER = _array_header(_TAIL_FIELDS)
_STATE_HEADER = _array_header(_HEAD_FIELDS + 1 + _TAIL_FIELDS)
_ENTRY_HEADER = _array_header(6)


def _history(t: int, history: list[Change]) -> bytes:
    """The history as a packed array: per change [t - as_of, cause, total and delta in
    hundredths, stage, [rule, points in hundredths, ...]]; all but the time is packed once
    per change (changes are never modified) and kept with it."""
    parts = [_array_header(len(history))]
    for c in history:
        rest = c.packed
        if rest is None:
            reasons = [x for rule, points in c.reasons for x in (rule, round(points * 100))]
            rest = c.packed = _pack(
                [c.cause_event_id, round(c.total * 100), round(c.delta * 100), c.stage, reasons]
            )[1:]
        parts += (_ENTRY_HEADER, _pack(t - c.as_of), rest)
    return b"".join(parts)


def _decode_compact(raw: bytes) -> LeadState:
    if raw[:1] != COMPACT:
        raise LeadscoreError(f"a stored state's frame starts with {raw[:1]!r}, not a compact state")
    fields = _unpack(raw[1:])
    if len(fields) != _HEAD_FIELDS + 1 + _TAIL_FIELDS:
        raise LeadscoreError(
            f"a stored state has {len(fields)} fields, not {_HEAD_FIELDS + 1 + _TAIL_FIELDS}: "
            "it was written by another version of leadscore"
        )
    (
        t,
        engagement,
        fixed,
        last_activity,
        first_seen,
        events,
        attributes,
        consent,
        stage,
        stage_since,
        published_total,
        published_fit,
        published_grade,
        published_contact,
        pending,
        recent,
        tags,
        fired,
        caps,
        matched,
        counts,
        visits,
        kept,
        contributions,
        history,
        first_request_at,
        first_response_at,
        published_tags,
        published_speed,
        early_responses,
        published_clip,
        categories,
    ) = fields
    return LeadState(
        engagement=engagement,
        fixed=fixed,
        as_of=t,
        last_activity=t - last_activity,
        first_seen=t - first_seen,
        events=events,
        attributes={
            attributes[i]: (attributes[i + 1], t - attributes[i + 2])
            for i in range(0, len(attributes), 3)
        },
        consent=None if consent is None else (consent[0], t - consent[1]),
        stage=stage,
        stage_since=None if stage_since is None else t - stage_since,
        published_total=published_total,
        published_fit=published_fit,
        published_grade=published_grade,
        published_contact=published_contact,
        pending=_pairs(pending),
        recent=[recent[i : i + 8] for i in range(0, len(recent), 8)],
        tags=set(tags),
        fired={fired[i]: t - fired[i + 1] for i in range(0, len(fired), 2)},
        caps={caps[i]: _used(caps[i + 1]) for i in range(0, len(caps), 2)},
        matched={
            matched[i]: [
                (t - m[j], m[j + 1], m[j + 2])
                for m in (matched[i + 1],)
                for j in range(0, len(m), 3)
            ]
            for i in range(0, len(matched), 2)
        },
        counts=_pairs(counts),
        visits=[t - v for v in visits],
        kept=kept,
        contributions=_triples(contributions),
        history=[
            Change(
                t - h[0],
                h[1],
                h[2] / 100,
                h[3] / 100,
                h[4],
                tuple((h[5][i], h[5][i + 1] / 100) for i in range(0, len(h[5]), 2)),
            )
            for h in history
        ],
        first_request_at=None if first_request_at is None else t - first_request_at,
        first_response_at=None if first_response_at is None else t - first_response_at,
        published_tags=tuple(published_tags),
        published_speed=published_speed,
        early_responses=[t - r for r in early_responses],
        published_clip=published_clip,
        categories={
            categories[i]: CategoryScore(
                categories[i + 1],
                categories[i + 2],
                _triples(categories[i + 7]),
                _pairs(categories[i + 6]),
                categories[i + 3],
                categories[i + 4],
                categories[i + 5],
            )
            for i in range(0, len(categories), 8)
        },
    )


_COMPRESSED_HEADER = COMPRESSED + bytes((DICTIONARY,))


class _Zstd(threading.local):
    """A compressor and a decompressor with the dictionary (zstd contexts are not to be
    shared between threads)."""

    def __init__(self) -> None:
        dictionary = zstandard.ZstdCompressionDict(
            resources.files("leadscore.state")
            .joinpath(f"dictionaries/states-{DICTIONARY}.zdict")
            .read_bytes()
        )
        self.compressor = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL,
            dict_data=dictionary,
            write_checksum=False,
            write_content_size=True,
            write_dict_id=False,
        )
        self.decompressor = zstandard.ZstdDecompressor(dict_data=dictionary)


_ZSTD: _Zstd | None = None


def _zstd() -> _Zstd:
    global _ZSTD
    if _ZSTD is None:
        _ZSTD = _Zstd()
    return _ZSTD


_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack


def _unpack(raw: bytes) -> list[Any]:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)  # type: ignore[no-any-return]


def _flat(mapping: dict[Any, Any]) -> list[Any]:
    return [x for pair in mapping.items() for x in pair]


def _windows(used: dict[int, float]) -> list[Any]:
    """A capped rule's used points per window: the newest window's index, then per window
    its distance from it and the points (whole points as integers: a byte each, where a
    double takes nine; a lead busy every hour of a week has 169 windows of a 1h cap)."""
    if not used:
        return []
    newest = max(used)
    flat: list[Any] = [newest]
    for window, points in used.items():
        flat += (newest - window, int(points) if float(points).is_integer() else points)
    return flat


def _used(flat: list[Any]) -> dict[int, float]:
    if not flat:
        return {}
    newest = flat[0]
    return {newest - flat[i]: float(flat[i + 1]) for i in range(1, len(flat), 2)}


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _triples(flat: list[Any]) -> dict[str, tuple[float, float]]:
    return {flat[i]: (flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)}


_VERSION = struct.Struct(">I")


def encode_profile(
    version: int,
    state: LeadState,
    watermarks: dict[tuple[str, int], int],
    schedule: tuple[str, int] | None,
    pending: Sequence[StoredOutput],
    tokens: dict[tuple[str, int], int],
) -> bytes:
    """A profile as one Redis string: its version (4 bytes, big-endian: the write script
    reads it with GETRANGE), then a msgpack array of the watermarks with, per partition,
    the token of the last write that kept outputs of its events (`state/replay.py`; 0:
    none), the schedule partition, the pending outputs of time-driven changes and the
    state."""
    return _VERSION.pack(version) + _pack(  # type: ignore[no-any-return]
        [
            [
                x
                for (topic, partition), offset in watermarks.items()
                for x in (topic, partition, offset, tokens.get((topic, partition), 0))
            ],
            None if schedule is None else list(schedule),
            _outputs(pending),
            encode_state(state),
        ]
    )


def decode_profile(
    raw: bytes,
) -> tuple[
    int,
    LeadState,
    dict[tuple[str, int], int],
    tuple[str, int] | None,
    list[StoredOutput],
    dict[tuple[str, int], int],
]:
    """What `encode_profile` wrote: (version, state, watermarks, schedule, pending,
    tokens)."""
    (version,) = _VERSION.unpack_from(raw)
    parts = _unpack(raw[_VERSION.size :])
    if len(parts) != 4 or len(parts[0]) % 4:
        raise LeadscoreError(
            "a profile in another layout than this version's (4 parts, watermarks in fours)"
        )
    marks, schedule, pending, state = parts
    partitions = [(marks[i], marks[i + 1]) for i in range(0, len(marks), 4)]
    return (
        version,
        decode_state(state),
        {p: marks[i * 4 + 2] for i, p in enumerate(partitions)},
        None if schedule is None else (schedule[0], schedule[1]),
        _stored_outputs(pending),
        {p: marks[i * 4 + 3] for i, p in enumerate(partitions) if marks[i * 4 + 3]},
    )


def _outputs(outputs: Sequence[StoredOutput]) -> list[list[Any]]:
    return [[o.cause_offset, _KINDS.index(o.kind), o.value] for o in outputs]


def _stored_outputs(packed: list[list[Any]]) -> list[StoredOutput]:
    return [StoredOutput(offset, _KINDS[kind], value) for offset, kind, value in packed]


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
