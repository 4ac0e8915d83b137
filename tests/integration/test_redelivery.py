"""Redeliveries change nothing: upstream duplicates (an event re-produced under a new
offset) and a consumer replay from the beginning leave every lead as it was."""

from __future__ import annotations

import random

from leadscore.codec import decode_output
from leadscore.events import ProfileKey
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    Env,
    read_all,
    rewind,
    schedule_drained,
    wait_until,
)
from tests.integration.workloads import one_topic_per_lead, pure_outcome
from tests.records import now_ms

LEADS = 1_000
EVENTS = 10_000
DUPLICATES = 1_000
START = now_ms() - 3_600_000
CLOCK = START + EVENTS * 100 + 60_000


def workload() -> tuple[list[tuple[str, str, bytes]], int]:
    """Each lead on one topic, in time order; DUPLICATES earlier records re-produced later
    in the stream (a producer's retry). Returns the records and how many are unique."""
    rng = random.Random(8)
    records = one_topic_per_lead(
        events=EVENTS, leads=LEADS, prefix="R", start=START, spacing_ms=100, seed=8
    )
    for _ in range(DUPLICATES):
        at = rng.randrange(1, len(records))
        records.insert(at + rng.randrange(len(records) - at + 1), records[rng.randrange(at)])
    return records, EVENTS


def committed(env: Env) -> int:
    return sum(max(o, 0) for o in env.committed().values())


def test_duplicates_and_a_replay_from_the_beginning_change_no_score(env: Env) -> None:
    records, _unique = workload()
    env.produce([(env.topic(kind), lead.encode(), value) for kind, lead, value in records])
    _ids, reference = pure_outcome(records, CLOCK)  # the core drops the copies itself
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
