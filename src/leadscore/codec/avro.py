"""Plain (schemaless) Avro with the bundled schemas: input bytes -> Event, Output -> bytes."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import fastavro

from leadscore.codec import writer
from leadscore.codec.schemas import RECORD_EVENT_TYPES, schema
from leadscore.errors import DecodeError, InvalidEvent
from leadscore.events import Consent, Event, Source
from leadscore.scoring.outputs import Output, ScoreChanged

MAX_ID_LENGTH = 256


def encode_record(record_type: str, record: dict[str, Any]) -> bytes:
    """Encode one record of a bundled schema (used by producers, the simulator and tests)."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema(record_type), record)
    return buffer.getvalue()


class InputDecoder:
    """Decodes and validates the records of one input topic.

    Raises `DecodeError` for bytes that are not a record of the schema and `InvalidEvent`
    (with a reason code) for a record that cannot be scored.
    """

    def __init__(
        self,
        record_type: str,
        *,
        max_clock_skew_ms: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.record_type = record_type
        self.event_type = RECORD_EVENT_TYPES[record_type]
        self._schema = schema(record_type)
        self._max_skew_ms = max_clock_skew_ms
        self._clock = clock

    def __call__(self, value: bytes | None) -> Event:
        if not value:
            raise DecodeError("empty message")
        buffer = io.BytesIO(value)
        try:
            record = fastavro.schemaless_reader(buffer, self._schema, None)
        except Exception as exc:  # fastavro raises many types for corrupt input
            raise DecodeError(f"not a {self.record_type} record: {exc!r}") from exc
        if buffer.tell() != len(value):
            raise DecodeError(
                f"not a {self.record_type} record: {len(value) - buffer.tell()} trailing bytes"
            )
        assert isinstance(record, dict)
        return self._validate(record)

    def _validate(self, r: dict[str, Any]) -> Event:
        for name in ("event_id", "lead_id", "anonymous_id"):
            if r[name] is not None and len(r[name]) > MAX_ID_LENGTH:
                raise InvalidEvent(
                    "invalid-field", f"{name} is longer than {MAX_ID_LENGTH} characters"
                )
        if not r["event_id"]:
            raise InvalidEvent("missing-id", "event_id is empty")
        if not r["lead_id"] and not r["anonymous_id"]:
            raise InvalidEvent("missing-id", "neither lead_id nor anonymous_id is set")
        occurred_at: int = r["occurred_at"]
        if occurred_at < 0:
            raise InvalidEvent("invalid-timestamp", f"occurred_at is negative ({occurred_at})")
        now_ms = int(self._clock() * 1000)
        if occurred_at > now_ms + self._max_skew_ms:
            raise InvalidEvent(
                "future-timestamp",
                f"occurred_at is {(occurred_at - now_ms) / 1000:.0f} s in the future "
                f"(tolerance {self._max_skew_ms / 1000:.0f} s)",
            )
        for name in ("duration_ms", "fill_duration_ms", "duration_s"):
            if (r.get(name) or 0) < 0:
                raise InvalidEvent("invalid-field", f"{name} is negative ({r[name]})")
        source = r["source"]
        context = r["context"] or {}
        consent = r.get("consent")
        return Event(
            type=self.event_type,
            event_id=r["event_id"],
            occurred_at=occurred_at,
            lead_id=r["lead_id"] or None,
            anonymous_id=r["anonymous_id"] or None,
            source=Source(**source) if source else None,
            device=context.get("device"),
            user_agent=context.get("user_agent"),
            traits=r["traits"],
            url=r.get("url"),
            target_url=r.get("target_url"),
            ad_id=r.get("ad_id"),
            title=r.get("title"),
            session_id=r.get("session_id"),
            duration_ms=r.get("duration_ms"),
            form_id=r.get("form_id"),
            fields=r.get("fields") or {},
            fill_duration_ms=r.get("fill_duration_ms"),
            completed_by=r.get("completed_by"),
            consent=Consent(**consent) if consent else None,
            call_id=r.get("call_id"),
            direction=r.get("direction"),
            tracking_number=r.get("tracking_number"),
            duration_s=r.get("duration_s"),
            answered=r.get("answered"),
            outcome=r.get("outcome"),
        )


class OutputEncoder:
    """Encodes output events as (key, value, headers) for the output topic."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def __call__(self, output: Output) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        emitted_at = int(self._clock() * 1000)
        if isinstance(output, ScoreChanged):
            value = writer.score_changed(output, emitted_at)
        else:
            value = writer.stage_transitioned(output, emitted_at)
        return output.profile.id.encode("utf-8"), value, [("leadscore-type", output.kind.encode())]


def decode_output(kind: str, value: bytes) -> dict[str, Any]:
    """An output record as a dict, given its `leadscore-type` header (for consumers)."""
    record_type = {"score_changed": "ScoreChanged", "stage_transitioned": "StageTransitioned"}
    if kind not in record_type:
        raise DecodeError(f"unknown leadscore-type {kind!r}")
    try:
        record = fastavro.schemaless_reader(io.BytesIO(value), schema(record_type[kind]), None)
    except Exception as exc:
        raise DecodeError(f"not a {record_type[kind]} record: {exc!r}") from exc
    assert isinstance(record, dict)
    return record
