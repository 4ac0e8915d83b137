"""Redis lost the state the committed offsets stand for (restarted empty, restored from an
old snapshot): the worker refuses to go on, says why and how to recover, and counts it in
a metric; after the documented recovery (offsets reset to the earliest) every event
counts once."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from leadscore.errors import StateLost
from leadscore.simulate import Traffic
from leadscore.state import keys
from leadscore.state.store import StateStore
from tests.integration.conftest import (
    Env,
    Services,
    assert_counted_once,
    committed_all,
    rewind,
    wait_until,
    worker_environment,
    worker_exit,
)

EVENTS = 120
# the refusing worker runs in a thread of the test, whose exception pytest reports
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


def _processed(env: Env) -> list:  # type: ignore[type-arg]
    sent = Traffic(seed=41, leads=20, late_rate=0, malformed_rate=0).next(EVENTS)
    worker = env.start_worker()
    env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in sent])
    committed_all(env, sent)
    worker.stop()
    return sent


def test_a_redis_restarted_empty_stops_the_worker_until_the_state_is_rebuilt(env: Env) -> None:
    sent = _processed(env)
    for key in env.redis.scan_iter(f"{env.prefix}:*"):  # as after a restart without persistence
        env.redis.delete(key)

    worker = env.start_worker()
    wait_until(lambda: not worker.thread.is_alive(), what="the worker to refuse")
    assert isinstance(worker.error, StateLost)
    message = str(worker.error)
    assert "Redis does not hold the state the committed offsets stand for" in message
    assert f"{env.topic('visits')}[0]: committed offset" in message
    assert "Redis holds the state of no offset" in message
    assert "--reset-offsets --to-earliest" in message
    lost = worker.worker.metrics.state_lost._value.get()
    assert lost == sum(1 for offset in env.committed().values() if offset > 0)
    env.workers.remove(worker)

    code, output = worker_exit(worker_environment(env))  # as the orchestrator sees it
    assert code == 1
    assert "does not hold the state" in output

    rewind(env)
    env.start_worker()
    committed_all(env, sent)
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    assert assert_counted_once(store, sent) > 0


def test_a_redis_restored_from_an_older_snapshot_is_refused(env: Env) -> None:
    """The markers survive, but behind the committed offsets."""
    _processed(env)
    topic = env.topic("visits")
    marker = keys.progress_key(env.prefix, topic, 0)
    env.redis.set(marker, int(env.redis.get(marker) or 0) - 1)
    worker = env.start_worker()
    wait_until(lambda: not worker.thread.is_alive(), what="the worker to refuse")
    assert isinstance(worker.error, StateLost)
    assert f"{topic}[0]: committed offset" in str(worker.error)
    env.workers.remove(worker)


def test_redis_emptied_under_a_running_worker_stops_it_at_the_next_batch(env: Env) -> None:
    """The partitions were checked when assigned; what the worker wrote since is its own
    floor: a marker below it at the next write means Redis lost data meanwhile (a restart
    without persistence, a failover to a replica that was behind)."""
    traffic = Traffic(seed=42, leads=20, late_rate=0, malformed_rate=0)
    first, second = traffic.next(60), traffic.next(60)
    worker = env.start_worker()
    env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in first])
    committed_all(env, first)
    for key in env.redis.scan_iter(f"{env.prefix}:*"):
        env.redis.delete(key)
    env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in second])
    wait_until(lambda: not worker.thread.is_alive(), what="the worker to stop")
    assert isinstance(worker.error, StateLost)
    assert "Redis lost state the worker wrote" in str(worker.error)
    assert worker.worker.metrics.state_lost._value.get() >= 1
    env.workers.remove(worker)
    assert sum(max(o, 0) for o in env.committed().values()) == len(first)  # none of second


def test_a_reset_to_the_earliest_retained_offsets_is_a_rebuild_not_a_loss(
    env: Env, services: Services
) -> None:
    """Retention deleted the oldest events (here: delete_records) and Redis lost
    everything: after the documented reset to the earliest offsets the worker starts (the
    committed offsets skip nothing still readable) and scores what arrives."""
    if not services.description.startswith("Apache Kafka"):
        pytest.skip("deleting records is Apache Kafka's (the embedded broker lacks it)")
    sent = _processed(env)
    ends = {t: o for t, o in env.committed().items() if o > 0}
    admin = AdminClient({"bootstrap.servers": services.bootstrap_servers})
    for future in admin.delete_records([TopicPartition(t, 0, o) for t, o in ends.items()]).values():
        future.result(30)
    for key in env.redis.scan_iter(f"{env.prefix}:*"):
        env.redis.delete(key)
    consumer = Consumer({"bootstrap.servers": services.bootstrap_servers, "group.id": "x"})
    try:  # the earliest retained offset of each topic, as --to-earliest would commit
        earliest = {
            t: consumer.get_watermark_offsets(TopicPartition(t, 0), timeout=10)[0]
            for t in env.input_topics.values()
        }
    finally:
        consumer.close()
    assert all(earliest[t] == o for t, o in ends.items())
    rewind(env, earliest)
    later = Traffic(seed=43, leads=20, late_rate=0, malformed_rate=0).next(40)
    worker = env.start_worker()
    env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in later])
    committed_all(env, sent + later)
    assert worker.thread.is_alive()
    worker.stop()
