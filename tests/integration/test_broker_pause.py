"""The broker stops answering mid-stream: the worker waits and counts every event once."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from leadscore.simulate import Traffic
from leadscore.state.store import StateStore
from tests.integration.conftest import Env, assert_counted_once, committed_all

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
    committed_all(env, sent)
    worker.stop()

    counted = assert_counted_once(StateStore(env.redis, namespace=env.prefix, ttl_ms=0), sent)
    assert counted > 1000
