"""The Kubernetes manifests (`deploy/kubernetes/`): the example overlay, rendered by
`kubectl kustomize` as a user would, is valid and runs the worker as documented.

Every built-in object (ConfigMap, Secret, Service, StatefulSet, PodDisruptionBudget) is
validated offline, in strict mode (unknown fields are errors), against the Kubernetes
1.30 schemas that the `kubernetes-validate` package ships. The ServiceMonitor is a custom
resource of the Prometheus Operator (monitoring.coreos.com/v1), for which that package has
no schema: it gets a structural check instead (its kind and API version, its selector
matching the Service's labels, its endpoint naming a port of the Service).

The worker's configuration is checked the way the worker reads it: the ConfigMap, the
Secret and the pod's own variables, as a pod would see them, are parsed by `leadscore
run`'s own options into its settings; every variable must be one of those options.

Needs `kubectl` (with its built-in kustomize) on PATH; no Kafka, no Redis. Without kubectl
the tests fail, saying so, rather than skip: a skipped check would pass CI unseen.
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml

from leadscore.cli import _worker_settings, run
from leadscore.settings import Settings

OVERLAY = Path(__file__).parents[2] / "deploy" / "kubernetes" / "overlays" / "example"
KUBERNETES_VERSION = "1.30"
SERVICE_MONITOR = ("monitoring.coreos.com/v1", "ServiceMonitor")
POD_NAME = "leadscore-0"

Object = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> list[Object]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is not on PATH: this test renders deploy/kubernetes/overlays/example "
            "with `kubectl kustomize` (kubectl 1.14 or later); install kubectl and run it again",
            pytrace=False,
        )
    result = subprocess.run(
        [kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {OVERLAY} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(objects: list[Object], kind: str) -> Object:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(objects: list[Object]) -> Object:
    containers = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def pod_environment(objects: list[Object]) -> dict[str, str]:
    """The worker's environment as the pod `leadscore-0` gets it: the ConfigMap and the
    Secret through envFrom (by the names the render gave them), then the container's env."""
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    env: dict[str, str] = {}
    worker = container(objects)
    for source in worker["envFrom"]:
        if "configMapRef" in source:
            config_map = by_name[("ConfigMap", source["configMapRef"]["name"])]
            env.update(config_map["data"])
        else:
            secret = by_name[("Secret", source["secretRef"]["name"])]
            env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    for var in worker["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            assert var["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, var
            env[var["name"]] = POD_NAME
    return env


def worker_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`leadscore run`'s settings from this environment alone, without starting it."""
    for name in [n for n in os.environ if n.startswith("LEADSCORE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    context = run.make_context("run", [])
    settings, _model = _worker_settings(context.params)
    return settings


def test_the_overlay_renders_each_object_once_in_its_namespace(rendered: list[Object]) -> None:
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == sorted(
        ["ConfigMap", "Secret", "Service", "StatefulSet", "PodDisruptionBudget", "ServiceMonitor"]
    )
    assert {o["metadata"]["namespace"] for o in rendered} == {"leadscore"}


def test_every_built_in_object_is_valid_against_the_kubernetes_schemas(
    rendered: list[Object],
) -> None:
    built_in = [o for o in rendered if (o["apiVersion"], o["kind"]) != SERVICE_MONITOR]
    assert len(built_in) == len(rendered) - 1
    for obj in built_in:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validation_catches_a_misplaced_field(rendered: list[Object]) -> None:
    broken = copy.deepcopy(one(rendered, "StatefulSet"))
    broken["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_service_monitor_scrapes_the_services_metrics_port(rendered: list[Object]) -> None:
    monitor = one(rendered, "ServiceMonitor")
    service = one(rendered, "Service")
    assert (monitor["apiVersion"], monitor["kind"]) == SERVICE_MONITOR
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector, "an empty selector would scrape every Service of the namespace"
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    endpoints = monitor["spec"]["endpoints"]
    assert endpoints
    for endpoint in endpoints:
        assert endpoint["port"] in port_names
        assert endpoint.get("path", "/metrics") == "/metrics"


def test_the_service_is_headless_and_reaches_the_metrics_port(
    rendered: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = one(rendered, "Service")
    stateful_set = one(rendered, "StatefulSet")
    pod_labels = stateful_set["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None"
    assert stateful_set["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    settings = worker_settings(pod_environment(rendered), monkeypatch)
    ports = {p["name"]: p["containerPort"] for p in container(rendered)["ports"]}
    (metrics,) = service["spec"]["ports"]
    assert ports[metrics["targetPort"]] == settings.metrics.port == 9400


def test_probes_ask_healthz_and_readyz_on_the_metrics_port(rendered: list[Object]) -> None:
    worker = container(rendered)
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        get = worker[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == 9400


def test_every_variable_is_a_run_option_and_the_settings_parse(
    rendered: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {p.envvar for p in run.params if isinstance(p, click.Option) and p.envvar}
    env = pod_environment(rendered)
    assert set(env) - options == set(), "not an environment variable of `leadscore run`"
    secret = one(rendered, "Secret")
    assert set(secret["data"]) == {"LEADSCORE_SASL_PASSWORD", "LEADSCORE_REDIS_URL"}
    assert set(one(rendered, "ConfigMap")["data"]).isdisjoint(
        {
            "LEADSCORE_SASL_PASSWORD",
            "LEADSCORE_REDIS_URL",
            "LEADSCORE_SCHEMA_REGISTRY_USER_INFO",
            "LEADSCORE_SSL_KEY_PASSWORD",
        }
    ), "secrets belong in the Secret"
    settings = worker_settings(env, monkeypatch)
    assert settings.worker.wait_for_services is True
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_password is not None


def test_the_pod_name_is_the_group_instance_id(
    rendered: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    (var,) = [v for v in container(rendered)["env"] if v["name"] == "LEADSCORE_GROUP_INSTANCE_ID"]
    assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    settings = worker_settings(pod_environment(rendered), monkeypatch)
    assert settings.kafka.group_instance_id == POD_NAME


def test_the_grace_period_outlasts_the_shutdown_timeout(
    rendered: list[Object], monkeypatch: pytest.MonkeyPatch
) -> None:
    grace = one(rendered, "StatefulSet")["spec"]["template"]["spec"]
    settings = worker_settings(pod_environment(rendered), monkeypatch)
    assert settings.worker.shutdown_timeout_s == 30
    # Room after the deadline for closing the Kafka clients before the kubelet's SIGKILL.
    assert grace["terminationGracePeriodSeconds"] >= settings.worker.shutdown_timeout_s + 10


def test_the_disruption_budget_covers_the_workers(rendered: list[Object]) -> None:
    budget = one(rendered, "PodDisruptionBudget")
    stateful_set = one(rendered, "StatefulSet")
    pod_labels = stateful_set["spec"]["template"]["metadata"]["labels"]
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector
    assert selector.items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] == 1
    assert stateful_set["spec"]["replicas"] > 1


def test_the_worker_runs_unprivileged_with_bounded_resources(rendered: list[Object]) -> None:
    worker = container(rendered)
    security = worker["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001  # the Dockerfile's user
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for bound in ("requests", "limits"):
        assert set(worker["resources"][bound]) == {"cpu", "memory"}
    assert worker["image"] == "registry.example.com/leadscore:0.1.0"
