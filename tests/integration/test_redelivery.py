"""Redeliveries change nothing: upstream duplicates (an event re-produced under a new
offset) and a consumer replay from the beginning leave every lead as it was."""

from __future__ import annotations

import random
from collections import defaultdict

from confluent_kafka import Consumer, TopicPartition

from leadscore.codec import InputDecoder, decode_output
from leadscore.scoring.events import Event, ProfileKey
from leadscore.scoring.score import advance, score
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    RECORD_TYPES,
    Env,
    read_all,
    schedule_drained,
    wait_until,
)
from tests.models import simple_model
from tests.records import encoded, now_ms

LEADS = 1_000
EVENTS = 10_000
DUPLICATES = 1_000
START = now_ms() - 3_600_000
CLOCK = START + EVENTS * 100 + 60_000


def workload() -> tuple[list[tuple[str, str, bytes]], int]:
    """Each lead on one topic, in time order; DUPLICATES earlier records re-produced later
    in the stream (a producer's retry). Returns the records and how many are unique."""
    rng = random.Random(8)
    kinds = list(RECORD_TYPES)
    records: list[tuple[str, str, bytes]] = []
    for i in range(EVENTS):
        lead = rng.randrange(LEADS)
        kind = kinds[lead % 4]
        value = encoded(
            RECORD_TYPES[kind], f"R{lead}", event_id=f"r{i}", occurred_at=START + i * 100
        )
        records.append((kind, f"R{lead}", value))
    for _ in range(DUPLICATES):
        at = rng.randrange(1, len(records))
        records.insert(at + rng.randrange(len(records) - at + 1), records[rng.randrange(at)])
    return records, EVENTS


def expected(records: list[tuple[str, str, bytes]]) -> dict[ProfileKey, object]:
    """Each lead's state from its distinct events only, swept up to the clock."""
    decoders = {rt: InputDecoder(rt, max_clock_skew_ms=300_000) for rt in RECORD_TYPES.values()}
    by_lead: dict[ProfileKey, list[Event]] = defaultdict(list)
    seen: set[str] = set()
    for kind, _lead, value in records:
        event = decoders[RECORD_TYPES[kind]](value)
        if event.event_id not in seen:
            seen.add(event.event_id)
            by_lead[event.profile_key].append(event)
    model = simple_model()
    return {
        lead: advance(lead, score(lead, None, events, model).state, model, CLOCK).state
        for lead, events in by_lead.items()
    }


def committed(env: Env) -> int:
    return sum(max(o, 0) for o in env.committed().values())


def rewind(env: Env) -> None:
    """Reset the worker group's offsets to the beginning of every input topic."""
    consumer = Consumer(
        {"bootstrap.servers": env.services.bootstrap_servers, "group.id": f"{env.prefix}-group"}
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(t, 0, 0) for t in env.input_topics.values()],
            asynchronous=False,
        )
    finally:
        consumer.close()


def test_duplicates_and_a_replay_from_the_beginning_change_no_score(env: Env) -> None:
    records, _unique = workload()
    env.produce([(env.topic(kind), lead.encode(), value) for kind, lead, value in records])
    reference = expected(records)
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)

    def states() -> dict[ProfileKey, object]:
        return {p: s.state for p, s in store.load(list(reference)).items()}

    def run_to_the_end() -> object:
        worker = env.start_worker(clock_speed=0, clock_start_ms=CLOCK)
        wait_until(
            lambda: committed(env) == len(records) and schedule_drained(env, CLOCK),
            timeout_s=180,
            what="every record committed",
        )
        worker.stop()
        return worker

    first = run_to_the_end()
    assert states() == reference  # each duplicate dropped: counted once, no output
    skipped = first.worker.metrics.events_skipped.labels("event_id")._value.get()  # type: ignore[attr-defined]
    assert skipped == DUPLICATES
    ids_before = {
        str(decode_output(dict(m.headers())["leadscore-type"].decode(), m.value())["event_id"])
        for m in read_all(env, "scores")
    }
    versions = {p: s.version for p, s in store.load(list(reference)).items()}

    rewind(env)
    again = run_to_the_end()
    replayed = again.worker.metrics.events_skipped.labels("watermark")._value.get()  # type: ignore[attr-defined]
    assert replayed == len(records)  # every offset (copies too) caught by a watermark
    assert states() == reference
    assert {p: s.version for p, s in store.load(list(reference)).items()} == versions
    ids_after = {
        str(decode_output(dict(m.headers())["leadscore-type"].decode(), m.value())["event_id"])
        for m in read_all(env, "scores")
    }
    assert ids_after == ids_before  # what the replay sent again, it sent under the same ids
