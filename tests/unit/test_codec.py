"""Avro codec: every record type round-trips; bad input raises with a reason code."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadscore.codec import INPUT_TYPES, InputDecoder, OutputEncoder, encode_record, schema, writer
from leadscore.codec.schemas import OUTPUT_TYPES, schema_text
from leadscore.errors import DecodeError, InvalidEvent
from leadscore.events import Consent, EventType, ProfileKey, Source
from leadscore.scoring.outputs import CategoryChange, Reason, ScoreChanged, StageTransitioned
from tests.records import record

NOW_MS = 1_800_000_000_000


def decoder(record_type: str) -> InputDecoder:
    return InputDecoder(record_type, max_clock_skew_ms=300_000, clock=lambda: NOW_MS / 1000)


@pytest.mark.parametrize("record_type", INPUT_TYPES)
def test_every_input_record_round_trips(record_type: str) -> None:
    original = record(record_type, "L1", occurred_at=NOW_MS - 5, traits={"industry": "saas"})
    event = decoder(record_type)(encode_record(record_type, original))
    assert event.event_id == original["event_id"]
    assert event.occurred_at == NOW_MS - 5
    assert event.lead_id == "L1"
    assert event.traits == {"industry": "saas"}
    assert event.source == Source("organic_search")
    assert event.device == "DESKTOP"
    for name, value in original.items():
        if name in (
            "event_id",
            "occurred_at",
            "lead_id",
            "anonymous_id",
            "traits",
            "source",
            "context",
            "consent",
        ):
            continue
        assert getattr(event, name) == value, name


def test_form_consent_and_call_fields_are_typed() -> None:
    form = decoder("FormSubmission")(
        encode_record("FormSubmission", record("FormSubmission", "L1", occurred_at=NOW_MS))
    )
    assert form.type is EventType.FORM
    assert form.consent == Consent(marketing=True, contact=True)
    call = decoder("Call")(encode_record("Call", record("Call", "L1", occurred_at=NOW_MS)))
    assert (call.direction, call.answered, call.duration_s) == ("INBOUND", True, 240)
    assert call.profile_key == ProfileKey("lead", "L1")


def test_an_anonymous_event_scores_the_anonymous_profile() -> None:
    raw = encode_record("Visit", record("Visit", None, anonymous_id="A1", occurred_at=NOW_MS))
    assert decoder("Visit")(raw).profile_key == ProfileKey("anon", "A1")


@pytest.mark.parametrize("record_type", OUTPUT_TYPES)
def test_output_schemas_are_the_published_files(record_type: str) -> None:
    assert '"namespace": "leadscore.output"' in schema_text(record_type)


def _read(record_type: str, value: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(value), schema(record_type), None)


def test_outputs_encode_with_key_and_type_header() -> None:
    profile = ProfileKey("lead", "L9")
    score = ScoreChanged(
        event_id="o1",
        profile=profile,
        occurred_at=1,
        as_of=2,
        model_version="m1",
        cause_event_id="e1",
        fit=5.0,
        engagement=10.0,
        total=15.0,
        previous_total=0.0,
        delta=15.0,
        grade="C3",
        stage="contact",
        reasons=(Reason("form", 10.0),),
        contact_allowed=True,
        speed_to_lead_ms=None,
    )
    key, value, headers = OutputEncoder(clock=lambda: 3.0)(score)
    assert key == b"L9"
    assert headers == [("leadscore-type", b"score_changed")]
    decoded = _read("ScoreChanged", value)
    assert decoded["lead_id"] == "L9"
    assert decoded["anonymous_id"] is None
    assert decoded["emitted_at"] == 3000
    assert decoded["reasons"] == [{"rule": "form", "points": 10.0}]

    transition = StageTransitioned(
        event_id="o2",
        profile=ProfileKey("anon", "A1"),
        occurred_at=1,
        as_of=2,
        model_version="m1",
        cause_event_id="e1",
        from_stage=None,
        to_stage="visitor",
        reason="first_event",
        fit=0.0,
        engagement=1.0,
        total=1.0,
        time_in_previous_stage_ms=None,
        conditions=("total 41.5 >= 40", "fit 15 >= 10"),
        explanation="total 41.5 >= 40 and fit 15 >= 10",
    )
    key, value, headers = OutputEncoder(clock=lambda: 3.0)(transition)
    assert key == b"A1"
    assert headers == [("leadscore-type", b"stage_transitioned")]
    decoded = _read("StageTransitioned", value)
    assert (decoded["lead_id"], decoded["anonymous_id"]) == (None, "A1")
    assert decoded["to_stage"] == "visitor"
    assert decoded["conditions"] == ["total 41.5 >= 40", "fit 15 >= 10"]
    assert decoded["explanation"] == "total 41.5 >= 40 and fit 15 >= 10"


def test_a_transition_written_before_conditions_existed_reads_with_the_defaults() -> None:
    """`conditions` and `explanation` were appended with defaults: a consumer with the new
    schema reads records of the old one (backward compatible)."""
    old = json.loads(schema_text("StageTransitioned"))
    old["fields"] = [f for f in old["fields"] if f["name"] not in ("conditions", "explanation")]
    record = {
        "event_id": "o2",
        "lead_id": "L1",
        "occurred_at": 1,
        "as_of": 2,
        "emitted_at": 3,
        "model_version": "m1",
        "cause_event_id": "e1",
        "from_stage": None,
        "to_stage": "visitor",
        "reason": "first_event",
        "fit": 0.0,
        "engagement": 1.0,
        "total": 1.0,
    }
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(old), record)
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(
        buffer, fastavro.parse_schema(old), schema("StageTransitioned")
    )
    assert (decoded["conditions"], decoded["explanation"]) == ([], None)
    assert decoded["reason"] == "first_event"


def _bad(record_type: str = "Click", **fields: Any) -> bytes:
    fields = {"lead_id": "L1", "occurred_at": NOW_MS, **fields}
    return encode_record(record_type, record(record_type, **fields))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "undecodable"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "undecodable"),
        (_bad()[:-3], "undecodable"),
        (_bad() + b"\x00\x00", "undecodable"),
        (_bad(lead_id=None, anonymous_id=None), "missing-id"),
        (_bad(lead_id="", anonymous_id=""), "missing-id"),
        (_bad(event_id=""), "missing-id"),
        (_bad(occurred_at=NOW_MS + 3_600_000), "future-timestamp"),
        (_bad(occurred_at=-1), "invalid-timestamp"),
        (_bad("Visit", duration_ms=-5), "invalid-field:Visit"),
        (_bad("Call", duration_s=-1), "invalid-field:Call"),
        (_bad(lead_id="x" * 300), "invalid-field"),
    ],
)
def test_bad_input_raises_with_a_reason(raw: bytes, reason: str) -> None:
    reason, _, record_type = reason.partition(":")
    record_type = record_type or "Click"
    with pytest.raises(InvalidEvent) as caught:
        decoder(record_type)(raw)
    assert caught.value.reason == reason
    assert str(caught.value)


def test_an_unknown_enum_symbol_is_undecodable() -> None:
    raw = bytearray(_bad("Call", event_id="e1"))  # "c-1" only in call_id
    # the Direction enum index sits right after call_id ("c-1"): make it 7 (no such symbol)
    position = raw.index(b"c-1") + 3
    raw[position] = 14  # zigzag(7)
    with pytest.raises(DecodeError):
        decoder("Call")(bytes(raw))


def test_a_timestamp_within_the_clock_skew_is_accepted() -> None:
    event = decoder("Click")(_bad(occurred_at=NOW_MS + 60_000))
    assert event.occurred_at == NOW_MS + 60_000


def _fastavro_bytes(output: ScoreChanged | StageTransitioned, emitted_at: int) -> bytes:
    """What the generic encoder writes for the same record (the reference)."""
    record = dataclasses.asdict(output)
    profile = record.pop("profile")
    kind = record.pop("kind")
    kind_of_profile, profile_id = profile
    record["lead_id"] = profile_id if kind_of_profile == "lead" else None
    record["anonymous_id"] = profile_id if kind_of_profile == "anon" else None
    record["emitted_at"] = emitted_at
    record_type = "ScoreChanged" if kind == "score_changed" else "StageTransitioned"
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema(record_type), record)
    return buffer.getvalue()


texts = st.text(max_size=30)
longs = st.integers(-(2**63), 2**63 - 1)
doubles = st.floats(allow_nan=False)
profiles = st.builds(ProfileKey, st.sampled_from(["lead", "anon"]), st.text(min_size=1))
reasons = st.lists(st.builds(Reason, texts, doubles), max_size=4).map(tuple)
categories = st.lists(
    st.builds(CategoryChange, texts, doubles, doubles, st.none() | texts, reasons), max_size=3
).map(tuple)
score_changes = st.builds(
    ScoreChanged,
    event_id=texts,
    profile=profiles,
    occurred_at=longs,
    as_of=longs,
    model_version=texts,
    cause_event_id=texts,
    fit=doubles,
    engagement=doubles,
    total=doubles,
    previous_total=doubles,
    delta=doubles,
    grade=texts,
    stage=texts,
    reasons=reasons,
    contact_allowed=st.booleans(),
    speed_to_lead_ms=st.none() | longs,
    tags=st.lists(texts, max_size=3).map(tuple),
    categories=categories,
)
transitions = st.builds(
    StageTransitioned,
    event_id=texts,
    profile=profiles,
    occurred_at=longs,
    as_of=longs,
    model_version=texts,
    cause_event_id=texts,
    from_stage=st.none() | texts,
    to_stage=texts,
    reason=texts,
    fit=doubles,
    engagement=doubles,
    total=doubles,
    time_in_previous_stage_ms=st.none() | longs,
    inactive_for_ms=st.none() | longs,
    conditions=st.lists(texts, max_size=4).map(tuple),
    explanation=st.none() | texts,
)


@settings(max_examples=300, deadline=None)
@given(score_changes | transitions, longs)
def test_the_hand_written_encoder_writes_what_fastavro_writes(
    output: ScoreChanged | StageTransitioned, emitted_at: int
) -> None:
    _key, value, _headers = OutputEncoder(lambda: 1_800_000_000.5)(output)
    encoded = (
        writer.score_changed(output, emitted_at)
        if isinstance(output, ScoreChanged)
        else writer.stage_transitioned(output, emitted_at)
    )
    assert encoded == _fastavro_bytes(output, emitted_at)
    assert value == _fastavro_bytes(output, 1_800_000_000_500)
