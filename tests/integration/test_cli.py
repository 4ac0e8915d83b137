"""`leadscore run` as a process: configuration from the environment, metrics, SIGTERM."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request

from leadscore.embedded import free_port
from tests.integration.conftest import Env, wait_until, worker_environment, worker_process
from tests.records import encoded


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def test_the_worker_process_serves_metrics_and_stops_cleanly_on_sigterm(env: Env) -> None:
    port = free_port()
    environment = worker_environment(env, metrics_port=str(port), metrics_host="127.0.0.1")
    env.produce(
        [
            (env.topic("forms"), b"L1", encoded("FormSubmission", "L1")),
            (env.topic("clicks"), b"x", b"not avro"),
        ]
    )
    process = worker_process(environment)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(base + "/healthz")[0] == 200, what="/healthz")
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, what="/readyz")

        def metrics() -> str:
            return http_get(base + "/metrics")[1]

        wait_until(
            lambda: 'leadscore_outputs_produced_total{kind="score_changed"} 1.0' in metrics(),
            what="an output counted",
        )
        text = metrics()
        assert 'leadscore_events_consumed_total{type="form"} 1.0' in text
        assert 'leadscore_events_dead_lettered_total{reason="undecodable"} 1.0' in text
        assert "leadscore_batch_duration_seconds_bucket" in text
        assert "leadscore_event_to_publish_seconds_count" in text
        assert "leadscore_redis_call_duration_seconds_count" in text
        lag = f'leadscore_consumer_lag_messages{{partition="0",topic="{env.topic("forms")}"}} 0.0'
        wait_until(lambda: lag in metrics(), what="consumer lag reported")  # once a second
        assert "L1" not in text  # no lead id in any label
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert time.monotonic() - started < 30
        assert "leaving the consumer group" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
