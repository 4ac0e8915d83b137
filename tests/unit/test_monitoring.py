"""Monitoring and compose files: the alert rules pass promtool's checks and unit tests, the
dashboard and the rules only use metric names the worker exports (a running worker's /metrics
is checked by tests/integration/test_prometheus.py), and docker-compose.yml is valid."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from leadscore.metrics import Metrics
from tests.monitoring import (
    ALERTS,
    ALERTS_TEST,
    DASHBOARD,
    ROOT,
    alert_rules,
    dashboard_queries,
    exposed_metric_names,
    used_metric_names,
)

PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: apt-get install prometheus (Debian) ships it")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def test_promtool_checks_the_alert_rules() -> None:
    checked = promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_has_promtool_unit_tests_that_pass() -> None:
    tested = promtool("test", "rules", str(ALERTS_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    evaluations = [e for case in cases for e in case["alert_rule_test"]]
    for rule in alert_rules():
        expected = [e["exp_alerts"] for e in evaluations if e["alertname"] == rule["alert"]]
        assert any(expected), f"no test where {rule['alert']} fires"
        assert [] in expected, f"no test where {rule['alert']} stays silent"


def test_the_dashboard_queries_are_valid_promql() -> None:
    # promtool parses the expressions of recording rules: check the panels' queries as such,
    # with Grafana's $__rate_interval replaced by a range.
    queries = dashboard_queries()
    assert queries
    rules = [
        {"record": f"leadscore:dashboard_query_{i}", "expr": q.replace("$__rate_interval", "1m")}
        for i, q in enumerate(queries)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard_rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_has_the_panels_operators_look_for() -> None:
    titles = {p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    assert {
        "Throughput by event type",
        "Consumer lag by partition",
        "Dead letters by reason",
        "Batch duration",
        "Event-to-output latency",
        "Stage transitions",
        "Speed-to-lead",
    } <= titles


def test_grafana_provisioning_points_at_the_dashboard_data_source() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    uids = {s["uid"] for s in sources["datasources"] if s["type"] == "prometheus"}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert {p["datasource"]["uid"] for p in panels} <= uids
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "leadscore.yaml").read_text())
    assert [p["options"]["path"] for p in providers["providers"]] == ["/etc/grafana/dashboards"]


def worker_metric_names() -> set[str]:
    """Names of the series a worker exposes: the samples of its registry, and for the
    labelled metrics that have no sample yet, the names they will have."""
    registry = Metrics().registry
    names = exposed_metric_names(generate_latest(registry).decode())
    for family in registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        else:  # gauge, histogram (its series lose their suffix in exposed_metric_names)
            names.add(family.name)
    return names


def test_the_dashboard_and_the_alerts_only_use_metrics_the_worker_exports() -> None:
    used = used_metric_names()
    assert "leadscore_events_consumed_total" in used
    unknown = {name: sorted(where) for name, where in used.items()}
    for name in worker_metric_names():
        unknown.pop(name, None)
    assert not unknown, f"metrics the worker does not export: {unknown}"


def test_docker_compose_runs_two_static_members_scraped_by_prometheus() -> None:
    # Debian's docker-compose validates the file without a Docker engine.
    compose = ROOT / "docker-compose.yml"
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed: apt-get install docker-compose (Debian)")
    checked = subprocess.run(
        ["docker-compose", "-f", str(compose), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    services = yaml.safe_load(compose.read_text())["services"]
    workers = {name: s for name, s in services.items() if name.startswith("worker")}
    ids = {name: s["environment"]["LEADSCORE_GROUP_INSTANCE_ID"] for name, s in workers.items()}
    assert ids == {"worker-1": "worker-1", "worker-2": "worker-2"}
    assert {s["ports"][0] for s in workers.values()} == {"9401:9400", "9402:9400"}
    config = yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text())
    assert config["rule_files"] == [ALERTS.name]
    targets = [
        t for job in config["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    ]
    assert sorted(targets) == [f"{name}:9400" for name in sorted(workers)]
    mounts = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert {
        "./deploy/prometheus/prometheus.yml",
        "./deploy/prometheus/alerts.yml",
        "./deploy/grafana/leadscore.json",
        "./deploy/grafana/provisioning/datasources",
        "./deploy/grafana/provisioning/dashboards",
    } <= mounts
