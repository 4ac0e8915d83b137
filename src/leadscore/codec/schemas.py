"""The bundled Avro schemas (`schemas/*.avsc`), parsed once and shared."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import fastavro

from leadscore.events import EventType

INPUT_TYPES = ("Click", "Visit", "FormSubmission", "Call")
OUTPUT_TYPES = ("ScoreChanged", "StageTransitioned")
RECORD_EVENT_TYPES = {
    "Click": EventType.CLICK,
    "Visit": EventType.VISIT,
    "FormSubmission": EventType.FORM,
    "Call": EventType.CALL,
}


def schema_text(record_type: str) -> str:
    """The `.avsc` file of one record type, as published to producers and consumers."""
    if record_type not in INPUT_TYPES + OUTPUT_TYPES:
        raise KeyError(f"no schema for record type {record_type!r}")
    return resources.files("leadscore.schemas").joinpath(f"{record_type}.avsc").read_text()


@cache
def schema(record_type: str) -> Any:
    """The parsed schema of one record type, e.g. `schema("Click")`.

    Logical types are dropped: timestamps stay epoch milliseconds (the same bytes on the
    wire) instead of becoming datetime objects on every decode.
    """
    return parse_plain(json.loads(schema_text(record_type)))


def parse_plain(schema_json: Any) -> Any:
    """A schema parsed as the codec reads every schema: without logical types (a writer
    schema from the registry too, so that it resolves to the bundled reader schema)."""
    return fastavro.parse_schema(_plain(schema_json))


def full_name(schema_json: Any) -> str | None:
    """`namespace.Name` of a record schema (None for another kind of schema)."""
    if not isinstance(schema_json, dict) or schema_json.get("type") != "record":
        return None
    name = str(schema_json.get("name", ""))
    namespace = schema_json.get("namespace")
    return f"{namespace}.{name}" if namespace and "." not in name else name


@cache
def record_full_name(record_type: str) -> str:
    """The full name of a bundled record type, e.g. `leadscore.events.Click`."""
    name = full_name(json.loads(schema_text(record_type)))
    assert name is not None
    return name


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
