"""A crash at each step of a batch's write (`StateStore.save`: per partition, then per
profile), on a standalone Redis and on a Redis Cluster: the next worker counts every event
once and publishes every output of an uninterrupted run, none twice.

The crash is the worker stopping dead in the middle of `save` (an exception nothing
catches, then the process's Kafka clients close without committing), at one of:

- before step 1: nothing of the batch is in Redis;
- between the steps: the outputs are kept and the schedule set, but no profile written
  (no profile's token names those outputs: they must not be published from Redis);
- after step 2: every profile written, nothing published (the replay republishes the
  kept outputs; see also test_replay.py).

Each lead has one event, so that its outputs do not depend on how a run batches the
events: the uninterrupted run's output ids are the reference.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pytest

from leadscore.codec import decode_output
from leadscore.events import ProfileKey
from leadscore.state.store import StateStore
from leadscore.worker import Worker, next_offsets
from tests.integration.conftest import (
    RECORD_TYPES,
    Env,
    Services,
    assert_counted_once,
    cluster_url,
    isolated_env,
    read_all,
    wait_until,
)
from tests.models import simple_model
from tests.records import encoded, now_ms

LEADS = 24
T = now_ms() - 60_000  # one event time for every run: output ids derive from it
KINDS = list(RECORD_TYPES)


class Crash(BaseException):
    """The process dies here."""


class Sent:
    def __init__(self, record_type: str, value: bytes) -> None:
        self.record_type, self.value = record_type, value


def messages(env: Env) -> list[tuple[str, bytes, bytes, str]]:
    """One event per lead, over every topic: (topic, key, value, record type)."""
    found = []
    for n in range(LEADS):
        kind = KINDS[n % len(KINDS)]
        lead = f"W{n}"
        fields: dict[str, Any] = {"fields": {}} if kind == "forms" else {}
        value = encoded(RECORD_TYPES[kind], lead, event_id=f"{lead}-e", occurred_at=T, **fields)
        found.append((env.topic(kind), lead.encode(), value, RECORD_TYPES[kind]))
    return found


def output_ids(env: Env) -> list[str]:
    return [
        str(decode_output(dict(m.headers())["leadscore-type"].decode(), m.value())["event_id"])
        for m in read_all(env, "scores")
    ]


@pytest.fixture(scope="module")
def reference(services: Services) -> set[str]:
    with isolated_env(services) as env:
        sent = messages(env)
        env.produce([(topic, key, value) for topic, key, value, _ in sent])
        env.start_worker()
        wait_until(lambda: sum(env.committed().values()) == len(sent), what="the reference")
        ids = output_ids(env)
    assert len(ids) == len(set(ids)) >= 2 * LEADS  # per lead: its transitions, a score
    return set(ids)


@pytest.mark.parametrize("redis_kind", ["standalone", "cluster"])
@pytest.mark.parametrize("crash", ["before step 1", "between the steps", "after step 2"])
def test_a_crash_at_any_step_of_a_write_loses_nothing_and_counts_nothing_twice(
    services: Services,
    reference: set[str],
    request: pytest.FixtureRequest,
    redis_kind: str,
    crash: str,
) -> None:
    with isolated_env(services, cluster_url=cluster_url(request, redis_kind)) as env:
        sent = messages(env)
        env.produce([(topic, key, value) for topic, key, value, _ in sent])
        crashed = Worker(env.settings(), simple_model())
        steps = 0
        with crashed.connected():
            store = crashed.store
            execute = store._execute

            def dying(pipe: Any, command: str, allow: Any = None) -> list[Any]:
                nonlocal steps
                if command == "EVALSHA":
                    steps += 1
                    if (crash, steps) in (("before step 1", 1), ("between the steps", 2)):
                        raise Crash
                return execute(pipe, command, allow)

            store._execute = dying  # type: ignore[method-assign]
            batch: list[Any] = []
            wait_until(
                lambda: bool(batch.extend(crashed.poll()) or len(batch) == len(sent)),
                what="the whole batch",
            )
            events, _ = crashed.decode(batch)
            with contextlib.suppress(Crash):
                crashed.score_and_persist(events, next_offsets(batch))
            # the process is gone: nothing published, nothing committed
        assert steps == {"before step 1": 1, "between the steps": 2, "after step 2": 2}[crash]

        env.start_worker()
        wait_until(lambda: sum(env.committed().values()) == len(sent), what="the replay")
        ids = output_ids(env)
        assert set(ids) == reference
        assert not [i for i, n in Counter(ids).items() if n > 1]  # nothing was published yet
        store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
        assert assert_counted_once(store, [Sent(rt, v) for _, _, v, rt in sent]) == len(sent)


def _crash_after_writing(env: Env, count: int) -> list[Any]:
    """A worker writes the first `count` messages of its input, publishes nothing and
    dies; returns what it would have published."""
    crashed = Worker(env.settings(), simple_model())
    with crashed.connected():
        batch: list[Any] = []
        wait_until(
            lambda: bool(batch.extend(crashed.poll()) or len(batch) == count),
            what=f"{count} messages",
        )
        events, _ = crashed.decode(batch)
        return crashed.score_and_persist(events, next_offsets(batch))


def test_a_replay_with_fresh_events_that_crashes_again_loses_nothing(env: Env) -> None:
    """A replay batch republishes kept outputs and scores new events of the same lead and
    partition: the lead's write names a new token for the partition, which must keep the
    republished outputs too, for a second crash before that batch is acknowledged."""
    lead = "R7"
    values = [
        encoded("Visit", lead, event_id=f"{lead}-{n}", occurred_at=T + n * 1000) for n in range(3)
    ]
    env.produce([(env.topic("visits"), lead.encode(), v) for v in values[:2]])
    lost = _crash_after_writing(env, 2)  # the first two written, nothing published
    env.produce([(env.topic("visits"), lead.encode(), values[2])])
    lost += _crash_after_writing(env, 3)  # the two replayed, the third new: a new token
    expected = {str(decode_output(o.kind, o.record.value)["event_id"]) for o in lost if o.partition}
    env.start_worker()
    wait_until(lambda: env.committed()[env.topic("visits")] == 3, what="the last replay")
    assert set(output_ids(env)) == expected
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    assert store.read(ProfileKey("lead", lead)).state.events == 3  # type: ignore[union-attr]
