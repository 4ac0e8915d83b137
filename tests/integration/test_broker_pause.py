"""The broker stops answering mid-stream: the worker waits and counts every event once."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict

import pytest

from leadscore.codec import InputDecoder
from leadscore.errors import InvalidEvent
from leadscore.scoring.events import ProfileKey
from leadscore.simulate import Traffic
from leadscore.state.store import StateStore
from tests.integration.conftest import Env, wait_until

PAUSE_S = 8.0  # longer than the session timeout: the group rebalances afterwards


def test_a_paused_broker_loses_and_double_counts_nothing(env: Env) -> None:
    pid = env.services.broker_pid
    if pid is None:
        pytest.skip("the broker is not a process of this test session")
    worker = env.start_worker()
    traffic = Traffic(seed=6, leads=100, late_rate=0)
    sent = []

    def produce() -> None:
        for _ in range(60):
            batch = traffic.next(25)
            env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in batch])
            sent.extend(batch)
            time.sleep(0.2)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(4)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(PAUSE_S)
    finally:
        os.kill(pid, signal.SIGCONT)
    producer.join()
    ends: dict[str, int] = defaultdict(int)
    for message in sent:
        ends[env.input_topics[message.record_type]] += 1
    wait_until(
        lambda: all(env.committed()[t] == n for t, n in ends.items()),
        timeout_s=120,
        what="every message committed",
    )
    worker.stop()

    decoders = {rt: InputDecoder(rt, max_clock_skew_ms=300_000) for rt in env.input_topics}
    expected: dict[ProfileKey, set[str]] = defaultdict(set)
    for message in sent:
        try:
            event = decoders[message.record_type](message.value)
        except InvalidEvent:
            continue
        expected[event.profile_key].add(event.event_id)
    store = StateStore(env.redis, namespace=env.prefix, ttl_ms=0)
    counted = {p: store.read(p).state.events for p in expected}  # type: ignore[union-attr]
    assert counted == {p: len(ids) for p, ids in expected.items()}
    assert sum(counted.values()) > 1000
