"""Confluent Schema Registry: the adapter over confluent-kafka's client, and the framing.

A framed value is the magic byte 0, the schema id (4 bytes, big-endian), then the Avro
binary record. Only this module talks to `confluent_kafka.schema_registry`; its errors are
turned into ours here:

- the id is not in the registry (404) -> `InvalidEvent("unknown-schema")`: the message
  goes to the dead-letter topic;
- the registry cannot be reached or answers 5xx/408/429 -> `SchemaRegistryUnavailable`
  (a `KafkaUnavailable`): the worker holds the batch and retries, as in a broker outage;
- it refuses the credentials or a request (401, 403, 409 an incompatible output schema,
  422, other 4xx) -> `SchemaRegistryRefused`: retrying will not help, the worker stops.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from leadscore.errors import (
    ConfigError,
    InvalidEvent,
    SchemaRegistryRefused,
    SchemaRegistryUnavailable,
)

MAGIC = 0
HEADER_SIZE = 5
_RETRIABLE = frozenset({408, 429})


def frame(schema_id: int) -> bytes:
    """The 5 bytes in front of a record written with the schema registered as `schema_id`."""
    return bytes((MAGIC,)) + schema_id.to_bytes(4, "big")


def schema_id(value: bytes) -> int | None:
    """The schema id of a framed value; None if the value is not framed."""
    if len(value) < HEADER_SIZE or value[0] != MAGIC:
        return None
    return int.from_bytes(value[1:HEADER_SIZE], "big")


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """A schema as registered: its type (AVRO, PROTOBUF, JSON) and its text."""

    schema_type: str
    text: str

    def parsed(self) -> Any:
        return json.loads(self.text)


class Registry:
    """Writer schemas by id and the ids of the schemas we write, both cached by the
    client (an id names one schema for ever)."""

    def __init__(self, client: Any, url: str) -> None:
        self._client = client
        self._url = url

    @property
    def client(self) -> Any:
        """The confluent-kafka client (tests hand a `mock://` one to its serializers)."""
        return self._client

    def writer_schema(self, schema_id: int) -> WriterSchema:
        """The schema registered as `schema_id` (GET /schemas/ids/{id})."""
        try:
            schema = self._call(lambda: self._client.get_schema(schema_id))
        except _NotFound as exc:
            raise InvalidEvent(
                "unknown-schema", f"schema id {schema_id} is not in the schema registry"
            ) from exc
        return WriterSchema(schema.schema_type or "AVRO", schema.schema_str)

    def register(self, subject: str, schema_text: str) -> int:
        """The id of an Avro schema under `subject`, registered if new
        (POST /subjects/{subject}/versions)."""
        from confluent_kafka.schema_registry import Schema

        schema = Schema(schema_text, "AVRO")
        try:
            return int(self._call(lambda: self._client.register_schema(subject, schema)))
        except _NotFound as exc:
            raise SchemaRegistryRefused(f"{self._url}: cannot register {subject}: {exc}") from exc

    def _call(self, request: Any) -> Any:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return request()
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            if status == 404:
                raise _NotFound(str(exc)) from exc
            if status >= 500 or status in _RETRIABLE:
                raise SchemaRegistryUnavailable(f"schema registry {self._url}: {exc}") from exc
            raise SchemaRegistryRefused(f"schema registry {self._url}: {exc}") from exc
        except Exception as exc:  # httpx (or httpx2) transport errors, OAuth token errors
            raise SchemaRegistryUnavailable(f"schema registry {self._url}: {exc!r}") from exc


class _NotFound(Exception):
    pass


_MOCK_CLIENTS: dict[str, Any] = {}
_MOCK_LOCK = threading.Lock()


def connect(config: dict[str, Any], display_url: str) -> Registry:
    """A registry client for `config` (the confluent client's settings: `url`,
    `basic.auth.user.info`, ...). Nothing is requested until a schema is needed.

    A `mock://` URL is confluent-kafka's in-memory registry, for tests and demos. The
    library gives each client its own store, so here every client of one mock URL in the
    process is the same one: a worker and a test's serializer see the same schemas, as
    they would on one server.
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    url = str(config["url"])
    try:
        if url.startswith("mock://"):
            with _MOCK_LOCK:
                client = _MOCK_CLIENTS.get(url)
                if client is None:
                    client = _MOCK_CLIENTS[url] = SchemaRegistryClient.new_client(config)
        else:
            client = SchemaRegistryClient(config)
    except (ValueError, TypeError) as exc:  # the client checks its settings
        raise ConfigError(f"schema registry {display_url}: {exc}") from exc
    return Registry(client, display_url)
