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
    worker_environment,
    worker_process,
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


def test_sigterm_during_an_outage_stops_within_the_deadline_and_loses_nothing(
    env: Env,
) -> None:
    """The batch in hand cannot be written: SIGTERM gives it the shutdown timeout, then the
    worker exits without committing it; the next worker processes it, once."""
    with embedded_redis() as url:
        port = url.rsplit(":", 1)[1].split("/")[0]
        pid = int(subprocess.check_output(["pgrep", "-f", f"127.0.0.1:{port}"]).split()[0])
        environment = worker_environment(env, redis_url=url, shutdown_timeout="3s")
        sent = Traffic(seed=9, leads=50, late_rate=0, malformed_rate=0).next(300)
        first = worker_process(environment)
        try:
            env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in sent[:100]])
            committed_all(env, sent[:100])
            os.kill(pid, signal.SIGSTOP)
            env.produce([(env.input_topics[m.record_type], m.key, m.value) for m in sent[100:]])
            lines: list[str] = []
            reader = threading.Thread(target=lambda: lines.extend(first.stdout), daemon=True)
            reader.start()
            # the worker takes the batch and waits for Redis (it may first be in a sweep,
            # which gives up on its own: a SIGTERM then would find no batch in hand)
            wait_until(
                lambda: any("persist state failed" in line for line in lines),
                what="the batch held by the outage",
            )
            started = time.monotonic()
            first.send_signal(signal.SIGTERM)
            first.wait(60)
            stopped_after = time.monotonic() - started
            reader.join(10)
            output = "".join(lines)
        finally:
            os.kill(pid, signal.SIGCONT)
            if first.poll() is None:
                first.kill()
        # the shutdown timeout runs from the signal, even though a Redis call was in flight
        # (at most its 2 s socket timeout, twice: the client retries once), then the group
        # is left
        assert stopped_after < 3 + 2 * 2 + 2
        print(f"\nSIGTERM during a Redis outage: stopped after {stopped_after:.1f} s")
        assert first.returncode != 0  # the batch was not finished: it says so
        assert "within the shutdown timeout" in output
        second = worker_process(environment)
        try:
            committed_all(env, sent)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(30) == 0
        client = redis.Redis.from_url(url)
        counted = assert_counted_once(StateStore(client, namespace=env.prefix, ttl_ms=0), sent)
        client.close()
        assert counted == len({m.value for m in sent if not m.duplicate})
