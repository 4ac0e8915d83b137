"""The stored state: every state the core makes survives encoding, and bytes it does not
write (uncompressed, another dictionary, JSON) are a clear error; a state folded in place
(as the worker does with its cached copy) equals one folded into a copy."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from leadscore import simulate
from leadscore.codec import InputDecoder
from leadscore.errors import InvalidEvent, LeadscoreError
from leadscore.events import ProfileKey
from leadscore.model import default_model
from leadscore.scoring.score import advance, score
from leadscore.scoring.state import LeadState
from leadscore.simulate import Traffic
from leadscore.state.encoding import (
    COMPACT,
    COMPRESSED,
    DICTIONARY,
    _zstd,
    decode_state,
    encode_compact,
    encode_state,
)

DAY_S = 86_400


def simulated_states(events: int = 6000) -> list[LeadState]:
    """States of simulated leads over weeks of event time (categories, caps, history,
    consent, time-driven changes)."""
    model = default_model()
    states, now = simulate.simulated_states(
        model, events=events, leads=300, seed=3, step=100, step_s=DAY_S / 4
    )
    swept = [advance(p, s, model, int(now * 1000)).state for p, s in states.items()]
    return list(states.values()) + swept


def test_every_state_round_trips_through_the_stored_encoding() -> None:
    states = simulated_states()
    assert any(s.categories and s.history and s.caps and s.consent for s in states)
    for state in states:
        raw = encode_state(state)
        assert raw[:2] == COMPRESSED + bytes((DICTIONARY,))
        assert decode_state(raw) == state
    assert decode_state(encode_state(LeadState())) == LeadState()


def test_a_compact_state_not_compressed_is_a_clear_error() -> None:
    raw = encode_compact(simulated_states(200)[0])
    assert raw[:1] == COMPACT
    with pytest.raises(LeadscoreError, match="not a state leadscore writes"):
        decode_state(raw)


def test_the_compact_state_is_the_array_a_msgpack_packer_writes() -> None:
    """The array is assembled from parts, each history entry packed once but for its time:
    the bytes are what packing the decoded array at once gives, and stay right when the
    lead's clock moves on (the entries' times are packed anew, the rest reused)."""
    states = [s for s in simulated_states(2000) if len(s.history) > 1]
    assert states
    for state in states:
        for later in (0, 3_600_000, 86_400_000):
            state.as_of += later
            raw = encode_compact(state)
            fields = msgpack.unpackb(raw[1:], raw=False, strict_map_key=False)
            assert msgpack.packb(fields, use_bin_type=True) == raw[1:]
            assert decode_state(encode_state(state)) == state
            assert fields[24][-1][0] == state.as_of - state.history[-1].as_of


def test_compression_with_the_shipped_dictionary_halves_the_state() -> None:
    states = simulated_states(3000)
    compact = sum(len(encode_compact(s)) for s in states)
    compressed = sum(len(encode_state(s)) for s in states)
    assert compressed < compact * 0.7, (compressed, compact)  # measured: 57%


def test_a_state_compressed_with_an_unknown_dictionary_is_a_clear_error() -> None:
    raw = encode_state(simulated_states(200)[0])
    newer = COMPRESSED + bytes((DICTIONARY + 1,)) + raw[2:]
    with pytest.raises(LeadscoreError, match=f"dictionary {DICTIONARY + 1}.*newer version"):
        decode_state(newer)


def test_a_state_compressed_with_an_unreleased_dictionary_is_a_clear_error() -> None:
    """Dictionary 1 was never released: its states are refused, not decompressed wrong."""
    raw = encode_state(simulated_states(200)[0])
    older = COMPRESSED + bytes((1,)) + raw[2:]
    with pytest.raises(LeadscoreError, match="dictionary 1, which no release"):
        decode_state(older)


def test_a_state_written_as_json_is_a_clear_error() -> None:
    with pytest.raises(LeadscoreError, match="not a state leadscore writes"):
        decode_state(b'{"e": 1.0, "t": 0}')


def test_a_compressed_frame_that_is_not_a_compact_state_is_a_clear_error() -> None:
    raw = COMPRESSED + bytes((DICTIONARY,)) + _zstd().compressor.compress(b'{"e": 1.0}')
    with pytest.raises(LeadscoreError, match="not a compact state"):
        decode_state(raw)


def test_folding_in_place_gives_what_folding_a_copy_gives() -> None:
    """The worker folds events into its cached state itself; the result, outputs
    included, is the same as folding into a copy."""
    model = default_model()
    now = [1_800_000_000.0]
    traffic = Traffic(seed=5, leads=200, clock=lambda: now[0])
    decoders: dict[str, InputDecoder] = {}
    copied: dict[ProfileKey, LeadState] = {}
    in_place: dict[ProfileKey, LeadState] = {}
    for _ in range(30):
        batch: dict[ProfileKey, list[Any]] = {}
        for message in traffic.next(100):
            decode = decoders.setdefault(
                message.record_type,
                InputDecoder(message.record_type, max_clock_skew_ms=300_000, clock=lambda: now[0]),
            )
            with contextlib.suppress(InvalidEvent):
                event = decode(message.value)
                batch.setdefault(event.profile_key, []).append(event)
        for profile, events in batch.items():
            before = copied.get(profile)
            expected = score(profile, before, events, model)
            got = score(profile, in_place.get(profile), events, model, in_place=True)
            assert got.outputs == expected.outputs
            assert got.state == expected.state
            copied[profile], in_place[profile] = expected.state, got.state
        now[0] += 3_600
