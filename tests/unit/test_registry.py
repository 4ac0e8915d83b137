"""Schema Registry wire format, against confluent-kafka's own AvroSerializer and
AvroDeserializer.

No registry server can be installed here: confluent-kafka's in-memory registry
(`mock://` URLs, `SchemaRegistryClient.new_client`) stands in for it. It answers the
same client calls (get schema by id, register under a subject), so what is tested is the
framing, the resolution and the error mapping; the HTTP requests themselves are the
library's.
"""

from __future__ import annotations

import json
import socket
import uuid
from datetime import datetime
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from leadscore.cli import main
from leadscore.codec import INPUT_TYPES, InputDecoder, OutputEncoder, decode_output, encode_record
from leadscore.codec.framed import FramedInputDecoder, FramedOutputEncoder
from leadscore.codec.registry import Registry, connect, frame, schema_id
from leadscore.codec.schemas import schema_text
from leadscore.errors import (
    ConfigError,
    DecodeError,
    InvalidEvent,
    KafkaUnavailable,
    SchemaRegistryRefused,
    SchemaRegistryUnavailable,
)
from leadscore.events import ProfileKey
from leadscore.scoring.outputs import Reason, ScoreChanged, StageTransitioned
from leadscore.settings import SchemaRegistrySettings, Secret
from tests.records import record

NOW_MS = 1_800_000_000_000
TOPIC = "leads.clicks"


@pytest.fixture
def registry() -> Registry:
    url = f"mock://{uuid.uuid4().hex}"
    return connect({"url": url}, url)


def framed_decoder(record_type: str, registry: Registry) -> FramedInputDecoder:
    return FramedInputDecoder(
        record_type, registry, max_clock_skew_ms=300_000, clock=lambda: NOW_MS / 1000
    )


def plain_decoder(record_type: str) -> InputDecoder:
    return InputDecoder(record_type, max_clock_skew_ms=300_000, clock=lambda: NOW_MS / 1000)


def serialize(registry: Registry, schema: str | dict[str, Any], value: dict[str, Any]) -> bytes:
    """What a producer using confluent-kafka's serializer sends (subject `<topic>-value`)."""
    text = schema if isinstance(schema, str) else json.dumps(schema)
    serializer = AvroSerializer(registry.client, text)
    data = serializer(value, SerializationContext(TOPIC, MessageField.VALUE))
    assert isinstance(data, bytes)
    return data


def evolved(record_type: str, change: Any) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(schema_text(record_type))
    change(schema["fields"])
    return schema


def reason(call: Any) -> str:
    with pytest.raises(InvalidEvent) as caught:
        call()
    return caught.value.reason


@pytest.mark.parametrize("record_type", INPUT_TYPES)
def test_a_record_from_the_confluent_serializer_decodes_as_plain_avro_does(
    registry: Registry, record_type: str
) -> None:
    value = record(record_type, "L1", occurred_at=NOW_MS - 5, traits={"plan": "pro"})
    data = serialize(registry, schema_text(record_type), value)
    assert schema_id(data) is not None
    expected = plain_decoder(record_type)(encode_record(record_type, value))
    assert framed_decoder(record_type, registry)(data) == expected


def test_an_evolved_writer_schema_resolves_to_the_bundled_one(registry: Registry) -> None:
    """Producers added an optional field and dropped one that has a default: the worker
    reads what it knows and fills the default."""

    def change(fields: list[dict[str, Any]]) -> None:
        fields.append({"name": "experiment", "type": ["null", "string"], "default": None})
        fields[:] = [f for f in fields if f["name"] != "traits"]

    value = record("Click", "L1", occurred_at=NOW_MS - 5, traits={})
    data = serialize(
        registry,
        evolved("Click", change),
        {**{k: v for k, v in value.items() if k != "traits"}, "experiment": "B"},
    )
    decoder = framed_decoder("Click", registry)
    assert decoder(data) == plain_decoder("Click")(encode_record("Click", value))
    assert decoder(data).traits == {}  # the reader's default


def test_an_incompatible_writer_schema_is_dead_lettered(registry: Registry) -> None:
    def change(fields: list[dict[str, Any]]) -> None:
        for f in fields:
            if f["name"] == "duration_s":
                f["type"] = "string"  # a required field changed type

    value = {**record("Call", "L1", occurred_at=NOW_MS), "duration_s": "long"}
    data = serialize(registry, evolved("Call", change), value)
    assert reason(lambda: framed_decoder("Call", registry)(data)) == "incompatible-schema"


def test_a_required_field_the_writer_lacks_is_incompatible(registry: Registry) -> None:
    def change(fields: list[dict[str, Any]]) -> None:
        fields[:] = [f for f in fields if f["name"] != "url"]

    value = {k: v for k, v in record("Click", "L1", occurred_at=NOW_MS).items() if k != "url"}
    data = serialize(registry, evolved("Click", change), value)
    assert reason(lambda: framed_decoder("Click", registry)(data)) == "incompatible-schema"


def test_another_record_type_is_incompatible(registry: Registry) -> None:
    data = serialize(registry, schema_text("Visit"), record("Visit", "L1", occurred_at=NOW_MS))
    decoder = framed_decoder("Click", registry)
    with pytest.raises(InvalidEvent, match=r"leadscore\.events\.Visit") as caught:
        decoder(data)
    assert caught.value.reason == "incompatible-schema"


def test_a_schema_of_another_kind_is_incompatible(registry: Registry) -> None:
    json_schema = Schema(json.dumps({"type": "object"}), "JSON")
    sid = registry.client.register_schema("x-value", json_schema)
    data = frame(sid) + b"{}"
    assert reason(lambda: framed_decoder("Click", registry)(data)) == "incompatible-schema"


def test_an_unknown_schema_id_is_dead_lettered(registry: Registry) -> None:
    plain = encode_record("Click", record("Click", "L1", occurred_at=NOW_MS))
    decoder = framed_decoder("Click", registry)
    with pytest.raises(InvalidEvent, match="schema id 4242") as caught:
        decoder(frame(4242) + plain)
    assert caught.value.reason == "unknown-schema"
    assert reason(lambda: decoder(frame(4242) + plain)) == "unknown-schema"  # remembered


def test_plain_avro_is_still_accepted_with_a_registry(registry: Registry) -> None:
    value = record("Click", "L1", occurred_at=NOW_MS)
    plain = encode_record("Click", value)
    assert plain[0] != 0  # the length of a non-empty event id
    assert framed_decoder("Click", registry)(plain) == plain_decoder("Click")(plain)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"], ids=repr)
def test_too_short_to_be_framed_is_undecodable(registry: Registry, data: bytes) -> None:
    with pytest.raises(DecodeError):
        framed_decoder("Click", registry)(data)


def test_a_truncated_framed_record_is_undecodable(registry: Registry) -> None:
    data = serialize(registry, schema_text("Click"), record("Click", "L1", occurred_at=NOW_MS))
    decoder = framed_decoder("Click", registry)
    for cut in (6, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError):
            decoder(data[:cut])
    with pytest.raises(DecodeError, match="trailing"):
        decoder(data + b"\x00")


def test_validation_applies_to_framed_records(registry: Registry) -> None:
    value = record("Click", None, occurred_at=NOW_MS, anonymous_id=None)
    data = serialize(registry, schema_text("Click"), value)
    assert reason(lambda: framed_decoder("Click", registry)(data)) == "missing-id"


def _outputs() -> list[ScoreChanged | StageTransitioned]:
    profile = ProfileKey("lead", "L9")
    common: dict[str, Any] = {
        "profile": profile,
        "occurred_at": 1,
        "as_of": 2,
        "model_version": "m1",
        "cause_event_id": "e1",
    }
    return [
        ScoreChanged(
            event_id="o1",
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
            **common,
        ),
        StageTransitioned(
            event_id="o2",
            from_stage=None,
            to_stage="visitor",
            reason="first_event",
            fit=0.0,
            engagement=1.0,
            total=1.0,
            time_in_previous_stage_ms=None,
            **common,
        ),
    ]


def test_outputs_are_framed_and_read_by_the_confluent_deserializer(registry: Registry) -> None:
    encode = FramedOutputEncoder(registry, "leads.scores", clock=lambda: 3.0)
    plain = OutputEncoder(clock=lambda: 3.0)
    deserializer = AvroDeserializer(registry.client)
    context = SerializationContext("leads.scores", MessageField.VALUE)
    for output in _outputs():
        key, value, headers = encode(output)
        plain_key, plain_value, plain_headers = plain(output)
        assert (key, headers) == (plain_key, plain_headers)
        assert value[5:] == plain_value  # the frame, then the same record
        assert _epoch_ms(deserializer(value, context)) == decode_output(output.kind, plain_value)
    assert sorted(registry.client.get_subjects()) == [
        "leads.scores-leadscore.output.ScoreChanged",
        "leads.scores-leadscore.output.StageTransitioned",
    ]


def test_output_subjects_hold_the_published_schemas(registry: Registry) -> None:
    encode = FramedOutputEncoder(registry, "leads.scores")
    _key, value, _headers = encode(_outputs()[0])
    sid = schema_id(value)
    assert sid is not None
    registered = registry.client.get_schema(sid)
    assert json.loads(registered.schema_str) == json.loads(schema_text("ScoreChanged"))


def _epoch_ms(record: dict[str, Any]) -> dict[str, Any]:
    """The deserializer's record with its timestamp-millis datetimes as epoch ms."""
    return {
        k: round(v.timestamp() * 1000) if isinstance(v, datetime) else v for k, v in record.items()
    }


class _Refusing:
    def __init__(self, status: int) -> None:
        self.status = status

    def get_schema(self, schema_id: int) -> Any:
        raise SchemaRegistryError(self.status, self.status * 100, "refused")

    def register_schema(self, subject: str, schema: Any) -> int:
        raise SchemaRegistryError(self.status, self.status * 100, "refused")


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_failing_registry_is_retried_not_dead_lettered(status: int) -> None:
    registry = Registry(_Refusing(status), "http://sr")
    data = frame(7) + encode_record("Click", record("Click", "L1", occurred_at=NOW_MS))
    with pytest.raises(SchemaRegistryUnavailable) as caught:
        framed_decoder("Click", registry)(data)
    assert isinstance(caught.value, KafkaUnavailable)  # the worker's retry handles it
    with pytest.raises(SchemaRegistryUnavailable):
        FramedOutputEncoder(registry, "leads.scores")(_outputs()[0])


@pytest.mark.parametrize("status", [401, 403, 409, 422])
def test_a_refusing_registry_stops_the_worker(status: int) -> None:
    registry = Registry(_Refusing(status), "http://sr")
    data = frame(7) + encode_record("Click", record("Click", "L1", occurred_at=NOW_MS))
    with pytest.raises(SchemaRegistryRefused):
        framed_decoder("Click", registry)(data)
    with pytest.raises(SchemaRegistryRefused):
        FramedOutputEncoder(registry, "leads.scores")(_outputs()[0])


def test_an_unreachable_registry_is_retried() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    registry = connect({"url": url, "max.retries": 0, "timeout": 2}, url)
    data = frame(7) + encode_record("Click", record("Click", "L1", occurred_at=NOW_MS))
    with pytest.raises(SchemaRegistryUnavailable, match=url):
        framed_decoder("Click", registry)(data)


def test_settings_hide_credentials_and_check_the_url() -> None:
    settings = SchemaRegistrySettings(
        url=Secret("https://u:pw@sr.example:8081"), user_info=Secret("key:secret")
    )
    assert "pw" not in repr(settings)
    assert "secret" not in repr(settings)
    assert settings.display_url == "https://u:***@sr.example:8081"
    config = SchemaRegistrySettings(
        url=Secret("https://sr.example:8081"), user_info=Secret("key:secret")
    ).client_config()
    assert config["basic.auth.user.info"] == "key:secret"
    with pytest.raises(ConfigError, match="http"):
        SchemaRegistrySettings(url=Secret("sr.example:8081")).client_config()
    with pytest.raises(ConfigError, match="USER:PASSWORD"):
        SchemaRegistrySettings(
            url=Secret("https://sr.example"), user_info=Secret("key")
        ).client_config()


def test_credentials_given_twice_are_refused() -> None:
    settings = SchemaRegistrySettings(
        url=Secret("https://u:pw@sr.example"), user_info=Secret("key:secret")
    )
    with pytest.raises(ConfigError, match="twice"):
        settings.client_config()


def test_the_run_options_and_their_environment_variables() -> None:
    help_text = CliRunner().invoke(main, ["run", "--help"], terminal_width=200).output
    for name in ("schema-registry-url", "schema-registry-user-info"):
        assert f"--{name}" in help_text
        assert "LEADSCORE_" + name.upper().replace("-", "_") in help_text
    result = CliRunner().invoke(
        main, ["run"], env={"LEADSCORE_SCHEMA_REGISTRY_URL": "sr.example:8081"}
    )
    assert result.exit_code == 2
    assert "expected http://HOST:PORT" in result.output
