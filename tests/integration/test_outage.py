"""Redis stops answering mid-stream: the worker waits, then counts every event once."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import threading
import time

import redis

from leadscore.embedded import embedded_redis
from leadscore.settings import Secret
from leadscore.simulate import Traffic
from leadscore.state.store import StateStore
from leadscore.worker import Worker
from tests.integration.conftest import (
    Env,
    WorkerHandle,
    assert_counted_once,
    committed_all,
    wait_until,
)
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

        def produce() -> None:
            started = time.monotonic()
            while time.monotonic() - started < 3 * OUTAGE_S:
                batch = traffic.next(40)
                env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in batch])
                sent.extend(batch)
                time.sleep(0.2)

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(OUTAGE_S)
        os.kill(pid, signal.SIGSTOP)  # Redis hangs: every call times out
        wait_until(lambda: worker.worker.metrics.ready._value.get() == 0, what="not ready")
        time.sleep(OUTAGE_S)
        os.kill(pid, signal.SIGCONT)
        producer.join()
        committed_all(env, sent)
        worker.stop()

        client = redis.Redis.from_url(url)
        counted = assert_counted_once(StateStore(client, namespace=env.prefix, ttl_ms=0), sent)
        client.close()
        assert counted > 500
