"""The metric names the dashboard and the alert rules use, and the names a worker exposes.

Shared by tests/unit/test_monitoring.py (the worker's registry) and
tests/integration/test_prometheus.py (a running worker's /metrics).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "leadscore.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"

_NAME = re.compile(r"\bleadscore_[a-zA-Z0-9_]+")
_HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def series_name(name: str) -> str:
    """The metric a sample name belongs to: histogram series lose their suffix."""
    for suffix in _HISTOGRAM_SERIES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def used_metric_names() -> dict[str, set[str]]:
    """leadscore_* metric name (histogram suffixes stripped) -> where it is used."""
    used: dict[str, set[str]] = {}
    sources = [("dashboard", q) for q in dashboard_queries()]
    sources += [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    for where, expr in sources:
        for name in _NAME.findall(expr):
            used.setdefault(series_name(name), set()).add(where)
    return used


def exposed_metric_names(exposition: str) -> set[str]:
    """Names of the samples in a Prometheus text exposition, histogram suffixes stripped."""
    return {
        series_name(re.split(r"[{\s]", line, maxsplit=1)[0])
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }
