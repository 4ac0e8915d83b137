"""The worker with a Schema Registry, on a real broker and a real Redis.

No registry server can be installed here: the registry is confluent-kafka's in-memory one
(a `mock://` URL). `codec.registry.connect` gives every client of one mock URL in the
process the same store, so the worker (in a thread of this process) and this test's
AvroSerializer and AvroDeserializer see the same schemas, as they would on one server.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from leadscore.codec import encode_record
from leadscore.codec.registry import Registry, connect, frame, schema_id
from leadscore.codec.schemas import schema_text
from leadscore.settings import SchemaRegistrySettings, Secret
from leadscore.worker import Worker
from tests.integration.conftest import Env, WorkerHandle, read_all, wait_until
from tests.models import simple_model
from tests.records import now_ms, record


def start_worker(env: Env, url: str) -> None:
    settings = replace(env.settings(), schema_registry=SchemaRegistrySettings(url=Secret(url)))
    env.workers.append(WorkerHandle(Worker(settings, simple_model())))


def serialize(registry: Registry, topic: str, schema: str, value: dict[str, Any]) -> bytes:
    serializer = AvroSerializer(registry.client, schema)
    data = serializer(value, SerializationContext(topic, MessageField.VALUE))
    assert isinstance(data, bytes)
    return data


def test_framed_inputs_are_scored_and_outputs_are_framed(env: Env) -> None:
    url = f"mock://{env.prefix}-{uuid.uuid4().hex[:6]}"
    registry = connect({"url": url}, url)
    t = now_ms() - 60_000
    clicks, visits = env.topic("clicks"), env.topic("visits")
    evolved = json.loads(schema_text("Click"))
    evolved["fields"].append({"name": "experiment", "type": ["null", "string"], "default": None})
    unknown = frame(99_999) + encode_record("Click", record("Click", "L9", occurred_at=t))
    visit_on_clicks = serialize(
        registry, visits, schema_text("Visit"), record("Visit", "L9", occurred_at=t)
    )
    env.produce(
        [
            (
                visits,
                b"L1",
                serialize(
                    registry, visits, schema_text("Visit"), record("Visit", "L1", occurred_at=t)
                ),
            ),
            (
                clicks,
                b"L2",
                serialize(
                    registry,
                    clicks,
                    json.dumps(evolved),
                    {**record("Click", "L2", occurred_at=t), "experiment": "B"},
                ),
            ),
            (clicks, b"L3", encode_record("Click", record("Click", "L3", occurred_at=t))),
            (clicks, b"L9", unknown),
            (clicks, b"L9", visit_on_clicks),
        ]
    )
    start_worker(env, url)

    dead = env.consume("dlq", 2)
    reasons = {
        m.value(): dict(m.headers())["leadscore-error-reason"].decode()  # unchanged values
        for m in dead
    }
    assert reasons == {unknown: "unknown-schema", visit_on_clicks: "incompatible-schema"}

    deserializer = AvroDeserializer(registry.client)
    context = SerializationContext(env.topic("scores"), MessageField.VALUE)
    outputs: list[dict[str, Any]] = []

    def every_lead_scored() -> bool:
        outputs[:] = [deserializer(m.value(), context) for m in read_all(env, "scores", 1.0)]
        return {o["lead_id"] for o in outputs} == {"L1", "L2", "L3"}

    wait_until(every_lead_scored, what="outputs of L1, L2 and L3")
    assert all(isinstance(o["as_of"], datetime) for o in outputs)  # read with the schema
    transitions = [o for o in outputs if "to_stage" in o]
    assert {o["lead_id"] for o in transitions if o["from_stage"] is None} == {"L1", "L2", "L3"}
    subjects = set(registry.client.get_subjects())
    assert {
        f"{env.topic('scores')}-leadscore.output.ScoreChanged",
        f"{env.topic('scores')}-leadscore.output.StageTransitioned",
    } <= subjects
    raw = read_all(env, "scores", 1.0)[0].value()
    registered = registry.client.get_schema(schema_id(raw))
    assert json.loads(registered.schema_str)["namespace"] == "leadscore.output"
