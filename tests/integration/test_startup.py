"""`leadscore run` pointed at the wrong place: it says which setting is wrong, within a
bounded time, in a few lines, and (when told to wait) is not ready until it can work."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from leadscore.embedded import free_port
from leadscore.kafka.admin import ensure_topics
from tests.integration.conftest import Env, wait_until, worker_environment
from tests.integration.test_cli import http_get


def run_to_exit(environment: dict[str, str], timeout_s: float = 90) -> tuple[int, list[str], float]:
    """Run `leadscore run` until it exits: its status, output lines and run time."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "leadscore", "run"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    lines = (done.stdout + done.stderr).splitlines()
    return done.returncode, lines, time.monotonic() - started


def problems(lines: list[str]) -> list[str]:
    """The problem lines under `Error: cannot start`."""
    start = next(i for i, line in enumerate(lines) if line.startswith("Error: cannot start"))
    return [line.strip() for line in lines[start + 1 :]]


def test_a_port_where_no_broker_listens_ends_the_start_with_one_line_naming_the_setting(
    env: Env,
) -> None:
    address = f"127.0.0.1:{free_port()}"
    environment = worker_environment(env, bootstrap_servers=address, startup_timeout="4s")
    status, lines, took = run_to_exit(environment)
    assert status == 1, lines
    (problem,) = problems(lines)
    assert problem.startswith(f"--bootstrap-servers: no broker answered at {address}"), problem
    assert "Connection refused" in problem
    assert took < 30
    # librdkafka's reconnect errors, shown once each instead of at every attempt
    assert len(lines) <= 8, "\n".join(lines)


def test_missing_input_topics_are_named(env: Env) -> None:
    topics = ",".join(f"{t}={rt}" for rt, t in env.input_topics.items())
    missing = f"{env.prefix}-nowhere.visits"
    environment = worker_environment(env, input_topics=f"{topics},{missing}", startup_timeout="2s")
    status, lines, _took = run_to_exit(environment)
    assert status == 1, lines
    (problem,) = problems(lines)
    assert problem.startswith(f"--input-topics: {missing} does not exist on the cluster"), problem


def test_a_wrong_redis_password_is_refused_at_once_and_not_printed(env: Env) -> None:
    """Refused credentials do not get better by retrying: the worker exits before its
    start-up timeout runs out."""
    client: redis.Redis = env.redis
    user = f"{env.prefix}-user"
    client.acl_setuser(
        user, enabled=True, passwords=["+right-password"], keys=["*"], commands=["+@all"]
    )
    try:
        host, port = (
            client.connection_pool.connection_kwargs["host"],
            client.connection_pool.connection_kwargs["port"],
        )
        url = f"redis://{user}:wrong-password@{host}:{port}/0"
        environment = worker_environment(env, redis_url=url, startup_timeout="60s")
        status, lines, took = run_to_exit(environment)
    finally:
        client.acl_deluser(user)
    assert status == 1, lines
    (problem,) = problems(lines)
    assert problem.startswith(
        f"--redis-url: Redis at redis://{user}:***@{host}:{port}/0 refused the credentials"
    ), problem
    assert took < 30
    assert not any("wrong-password" in line for line in lines)


def test_redis_where_nothing_listens_and_a_dead_broker_are_both_named(env: Env) -> None:
    environment = worker_environment(
        env,
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        startup_timeout="2s",
    )
    status, lines, _took = run_to_exit(environment)
    assert status == 1, lines
    found = problems(lines)
    assert [p.split(":", 1)[0] for p in found] == ["--bootstrap-servers", "--redis-url"], found
    assert "cannot reach Redis" in found[1]


def test_waiting_for_services_is_not_ready_until_the_topics_exist(env: Env, tmp_path: Path) -> None:
    port = free_port()
    late = f"{env.prefix}-late.clicks"
    topics = ",".join(f"{t}={rt}" for rt, t in env.input_topics.items())
    environment = worker_environment(
        env,
        input_topics=f"{topics},{late}",
        startup_timeout="1s",
        wait_for_services="true",
        metrics_port=str(port),
        metrics_host="127.0.0.1",
    )
    log = tmp_path / "worker.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "leadscore", "run"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(base + "/healthz")[0] == 200, what="/healthz")
        wait_until(lambda: "waiting for the services" in log.read_text(), what="a summary line")
        assert http_get(base + "/readyz")[0] == 503
        assert process.poll() is None  # still waiting, not exited
        ensure_topics({"bootstrap.servers": env.services.bootstrap_servers}, [late])
        wait_until(lambda: http_get(base + "/readyz")[0] == 200, what="/readyz")
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(60)
    text = log.read_text()
    assert status == 0, text
    waiting = [line for line in text.splitlines() if "waiting for the services" in line]
    assert all(f"--input-topics: {late} does not exist" in line for line in waiting), waiting
