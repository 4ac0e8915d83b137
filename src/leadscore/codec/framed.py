"""The Schema Registry wire format: input records written with any schema the registry
holds, resolved to the bundled one; outputs framed with the ids of the bundled ones.

Inputs: a value that starts with the magic byte 0 is framed: the writer schema is fetched
by its id (once per id) and the record is read with Avro schema resolution into the bundled
reader schema, so producers may add fields (ignored) or drop fields that have a default.
A value that does not start with 0 is plain Avro of the bundled schema, as without a
registry: producers can move to the registry one by one. There is no ambiguity: a plain
record starts with the length of its `event_id`, and 0 (an empty id) is never valid.

Outputs: subjects follow the TopicRecordNameStrategy, `<output topic>-<record full name>`
(`leads.scores-leadscore.output.ScoreChanged`): the one output topic carries two record
types, and the default `<topic>-value` subject holds a single schema lineage.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError

from leadscore.codec.avro import InputDecoder, OutputEncoder
from leadscore.codec.registry import HEADER_SIZE, MAGIC, Registry, frame
from leadscore.codec.registry import schema_id as framed_schema_id
from leadscore.codec.schemas import full_name, parse_plain, record_full_name, schema_text
from leadscore.errors import DecodeError, InvalidEvent
from leadscore.events import Event
from leadscore.scoring.outputs import Output

UNKNOWN_ID_RETRY_S = 60.0  # an id not found is asked again after this (registry lag)
MAX_UNKNOWN_IDS = 10_000
OUTPUT_RECORD_TYPES = {"score_changed": "ScoreChanged", "stage_transitioned": "StageTransitioned"}


class FramedInputDecoder(InputDecoder):
    """Decodes framed records (and plain ones) of one input topic.

    Besides the reasons of `InputDecoder`, raises `InvalidEvent` with `unknown-schema`
    (the id is not in the registry) or `incompatible-schema` (the writer schema is not the
    topic's record type or does not resolve to the bundled schema), and
    `SchemaRegistryUnavailable` (retry) while the registry cannot be reached.
    """

    def __init__(
        self,
        record_type: str,
        registry: Registry,
        *,
        max_clock_skew_ms: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(record_type, max_clock_skew_ms=max_clock_skew_ms, clock=clock)
        self._registry = registry
        self._full_name = record_full_name(record_type)
        # schema id -> (writer schema, reader schema or None when they are the same)
        self._schemas: dict[int, tuple[Any, Any]] = {}
        self._unknown: dict[int, tuple[InvalidEvent, float]] = {}

    def __call__(self, value: bytes | None) -> Event:
        if not value or value[0] != MAGIC:
            return super().__call__(value)
        schema_id = framed_schema_id(value)
        if schema_id is None:
            raise DecodeError(f"framed value of {len(value)} bytes: no schema id")
        schemas = self._schemas.get(schema_id) or self._resolve(schema_id)
        buffer = io.BytesIO(value)
        buffer.seek(HEADER_SIZE)
        try:
            record = fastavro.schemaless_reader(buffer, *schemas)
        except SchemaResolutionError as exc:
            raise InvalidEvent(
                "incompatible-schema",
                f"schema id {schema_id} does not resolve to the {self.record_type} schema: {exc}",
            ) from exc
        except Exception as exc:  # fastavro raises many types for corrupt input
            raise DecodeError(
                f"not a record of schema id {schema_id} ({self.record_type}): {exc!r}"
            ) from exc
        if buffer.tell() != len(value):
            raise DecodeError(
                f"not a record of schema id {schema_id} ({self.record_type}): "
                f"{len(value) - buffer.tell()} trailing bytes"
            )
        assert isinstance(record, dict)
        return self._validate(record)

    def _resolve(self, schema_id: int) -> tuple[Any, Any]:
        unknown = self._unknown.get(schema_id)
        if unknown and time.monotonic() < unknown[1]:
            raise unknown[0]
        try:
            writer = self._registry.writer_schema(schema_id)
        except InvalidEvent as exc:
            if len(self._unknown) >= MAX_UNKNOWN_IDS:  # garbage that happens to start with 0
                self._unknown.clear()
            self._unknown[schema_id] = (exc, time.monotonic() + UNKNOWN_ID_RETRY_S)
            raise
        self._unknown.pop(schema_id, None)
        if writer.schema_type.upper() != "AVRO":
            raise InvalidEvent(
                "incompatible-schema", f"schema id {schema_id} is {writer.schema_type}, not Avro"
            )
        try:
            parsed = writer.parsed()
            name = full_name(parsed)
            writer_schema = parse_plain(parsed)
        except Exception as exc:  # not JSON, not a valid schema, references
            raise InvalidEvent(
                "incompatible-schema", f"schema id {schema_id} cannot be read: {exc!r}"
            ) from exc
        if name != self._full_name:
            raise InvalidEvent(
                "incompatible-schema",
                f"schema id {schema_id} is a {name or 'non-record schema'}, this topic "
                f"carries {self._full_name}",
            )
        reader_schema = None if writer_schema == self._schema else self._schema
        schemas = self._schemas[schema_id] = (writer_schema, reader_schema)
        return schemas


class FramedOutputEncoder(OutputEncoder):
    """Encodes outputs framed with the ids of the bundled output schemas, registered under
    `<topic>-<record full name>` when the first output is encoded (inside the worker's
    retry: an unreachable registry holds the batch, it does not lose it)."""

    def __init__(
        self, registry: Registry, topic: str, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(clock)
        self._registry = registry
        self._topic = topic
        self._frames: dict[str, bytes] = {}

    def __call__(self, output: Output) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        key, value, headers = super().__call__(output)
        prefix = self._frames.get(output.kind)
        if prefix is None:
            prefix = self._register()[output.kind]
        return key, prefix + value, headers

    def subject(self, record_type: str) -> str:
        return f"{self._topic}-{record_full_name(record_type)}"

    def _register(self) -> dict[str, bytes]:
        for kind, record_type in OUTPUT_RECORD_TYPES.items():
            schema_id = self._registry.register(self.subject(record_type), schema_text(record_type))
            self._frames[kind] = frame(schema_id)
        return self._frames
