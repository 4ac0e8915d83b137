"""A real Prometheus (Debian's `prometheus`) scrapes a running worker and loads the alert
rules: the worker's metrics come back through Prometheus's HTTP API, and every metric the
dashboard and the rules use is in the worker's /metrics."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadscore.embedded import free_port
from tests.integration.conftest import Env, wait_until, worker_environment, worker_process
from tests.integration.test_cli import http_get
from tests.monitoring import ALERTS, alert_rules, exposed_metric_names, used_metric_names
from tests.records import encoded, now_ms


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    """Starts Prometheus on a free port scraping a target every second; yields its URL."""
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: apt-get install prometheus (Debian) ships it")
    processes: list[subprocess.Popen[bytes]] = []
    stack = contextlib.ExitStack()

    def start(target: str) -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(ALERTS)],
                    "scrape_configs": [
                        {"job_name": "leadscore", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        address = f"127.0.0.1:{free_port()}"
        log = stack.enter_context((tmp_path / "prometheus.log").open("wb"))
        processes.append(
            subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address={address}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        url = f"http://{address}"
        wait_until(lambda: http_get(url + "/-/ready")[0] == 200, what="Prometheus ready")
        return url

    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        stack.close()


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    status, body = http_get(f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
    assert status == 200, body
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def test_prometheus_scrapes_the_worker_and_loads_the_alert_rules(
    env: Env, prometheus_for: Any, tmp_path: Path
) -> None:
    port = free_port()
    environment = worker_environment(env, metrics_port=str(port), metrics_host="127.0.0.1")
    started = now_ms()
    valid = [
        (env.topic("clicks"), encoded("Click", "L1", occurred_at=started)),
        (env.topic("visits"), encoded("Visit", "L1", occurred_at=started + 1)),
        (env.topic("forms"), encoded("FormSubmission", "L1", occurred_at=started + 2)),
        (env.topic("calls"), encoded("Call", "L2", occurred_at=started + 3)),
        (env.topic("calls"), encoded("Call", "L1", direction="OUTBOUND", occurred_at=started + 4)),
    ]
    messages: list[tuple[str, bytes | None, bytes]] = [(t, b"L", v) for t, v in valid]
    env.produce([*messages, (env.topic("clicks"), b"x", b"not avro")])
    log = tmp_path / "worker.log"
    with log.open("w") as output:
        worker = worker_process(environment, output)
    try:
        prometheus = prometheus_for(f"127.0.0.1:{port}")

        dead = "leadscore_events_dead_lettered_total"

        def consumed() -> float:
            result = query(prometheus, "sum(leadscore_events_consumed_total)")
            return float(result[0]["value"][1]) if result else 0.0

        wait_until(lambda: consumed() >= len(valid), what="the events counted in Prometheus")
        assert consumed() == len(valid)
        wait_until(
            lambda: (
                [(r["metric"]["reason"], r["value"][1]) for r in query(prometheus, dead)]
                == [("undecodable", "1")]
            ),
            what="the dead letter counted in Prometheus",
        )
        assert query(prometheus, 'up{job="leadscore"}')[0]["value"][1] == "1"
        wait_until(
            lambda: [r["value"][1] for r in query(prometheus, "leadscore_ready")] == ["1"],
            what="leadscore_ready in Prometheus",
        )

        # The rules as Prometheus loaded them, evaluated without error (none can fire within
        # the test: each waits at least a minute).
        def rules() -> list[dict[str, Any]]:
            body = http_get(f"{prometheus}/api/v1/rules")[1]
            return [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]

        wait_until(
            lambda: all(r.get("lastEvaluation", "").startswith("20") for r in rules()),
            what="the rules evaluated",
        )
        loaded = rules()
        assert sorted(r["name"] for r in loaded) == sorted(r["alert"] for r in alert_rules())
        assert [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"] == []
        assert [r["name"] for r in loaded if r["state"] == "firing"] == []

        # Every metric the dashboard and the rules use, in the running worker's /metrics
        # (the lag gauges are refreshed once a second).
        def missing() -> set[str]:
            text = http_get(f"http://127.0.0.1:{port}/metrics")[1]
            return set(used_metric_names()) - exposed_metric_names(text)

        with contextlib.suppress(AssertionError):
            wait_until(lambda: not missing(), timeout_s=30)
        assert not missing(), f"not in the worker's /metrics: {sorted(missing())}"
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, log.read_text()
