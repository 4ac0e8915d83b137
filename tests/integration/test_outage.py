"""Redis stops answering mid-stream: the worker waits, then counts every event once."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict

import redis

from leadscore.codec import InputDecoder
from leadscore.embedded import embedded_redis
from leadscore.errors import InvalidEvent
from leadscore.scoring.events import ProfileKey
from leadscore.settings import Secret
from leadscore.simulate import Traffic
from leadscore.state.store import StateStore
from leadscore.worker import Worker
from tests.integration.conftest import Env, WorkerHandle, wait_until
from tests.models import simple_model

OUTAGE_S = 8.0


def test_a_redis_outage_pauses_the_worker_and_loses_nothing(env: Env) -> None:
    with embedded_redis() as url:
        port = url.rsplit(":", 1)[1].split("/")[0]
        pid = int(subprocess.check_output(["pgrep", "-f", f"127.0.0.1:{port}"]).split()[0])
        settings = env.settings()
        settings = dataclasses.replace(
            settings, redis=dataclasses.replace(settings.redis, url=Secret(url))
        )
        worker = WorkerHandle(Worker(settings, simple_model()))
        env.workers.append(worker)
        traffic = Traffic(seed=4, leads=100, late_rate=0)
        sent = []
        done = threading.Event()

        def produce() -> None:
            started = time.monotonic()
            while time.monotonic() - started < 3 * OUTAGE_S:
                batch = traffic.next(40)
                env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in batch])
                sent.extend(batch)
                time.sleep(0.2)
            done.set()

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(OUTAGE_S)
        os.kill(pid, signal.SIGSTOP)  # Redis hangs: every call times out
        wait_until(lambda: worker.worker.metrics.ready._value.get() == 0, what="not ready")
        time.sleep(OUTAGE_S)
        os.kill(pid, signal.SIGCONT)
        producer.join()
        ends = defaultdict(int)
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
        client = redis.Redis.from_url(url)
        store = StateStore(client, namespace=env.prefix, ttl_ms=0)
        counted = {p: store.read(p).state.events for p in expected}  # type: ignore[union-attr]
        client.close()
        assert counted == {p: len(ids) for p, ids in expected.items()}
        assert sum(counted.values()) > 500
