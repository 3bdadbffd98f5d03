"""The monitoring deploy files: docker-compose.yml's "monitoring" profile (Prometheus with
deploy/prometheus/prometheus.yml and the rules, the replication watch) and the kustomize Component
deploy/k8s/monitoring (PrometheusRule, PodMonitor, the watch), built with kubectl's kustomize where
kubectl is installed. Checked like test_deploy_files.py: without Docker or a cluster."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from couchfarm.settings import Settings
from tests.deploy import checks
from tests.deploy.test_deploy_files import (
    MONITORING,
    bad_vars,
    check_all_commands,
    compose,
    image_entrypoint,
    secret_values,
)
from tests.prometheus.rules import ALERTS, PROMETHEUS_CONFIG, needs_promtool

COMPONENT = checks.K8S / "monitoring"
OVERLAY = checks.ROOT / "deploy" / "k8s-with-monitoring"
RULE_SCRIPT = checks.ROOT / "scripts" / "prometheus-rule"


# -- docker compose ----------------------------------------------------------------------------------


def test_compose_monitoring_services_are_in_the_monitoring_profile_only() -> None:
    for name, service in compose()["services"].items():
        expected = ["monitoring"] if name in MONITORING else None
        assert service.get("profiles") == expected, name
    assert compose()["services"]["prometheus"]["image"].startswith("prom/prometheus:v2.")


def mounted(service: dict[str, Any], path: str) -> Path:
    """The repository file behind ``path`` in ``service``'s bind mounts."""
    target = PurePosixPath(path)
    for volume in service["volumes"]:
        source, mount = volume.split(":")[:2]
        if source.startswith("./") and target.is_relative_to(mount):
            return checks.ROOT / source / target.relative_to(mount)
    raise AssertionError(f"{path} is not in a bind mount of the service")


def prometheus_config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return data


def test_compose_prometheus_loads_its_config_and_the_shipped_rules() -> None:
    service = compose()["services"]["prometheus"]
    [config] = [a.split("=", 1)[1] for a in service["command"] if a.startswith("--config.file=")]
    assert mounted(service, config) == PROMETHEUS_CONFIG
    assert [(PROMETHEUS_CONFIG.parent / f).resolve() for f in prometheus_config()["rule_files"]] == [ALERTS]
    assert any(v.endswith(":/prometheus") for v in service["volumes"]), "its data on a named volume"


def test_compose_prometheus_scrapes_every_replica_of_every_service_with_metrics() -> None:
    services = compose()["services"]
    with_metrics = {
        name: checks.compose_env(s)["COUCHFARM_METRICS_PORT"]
        for name, s in services.items()
        if "COUCHFARM_METRICS_PORT" in checks.compose_env(s)
    }
    assert set(with_metrics) == {"dispatcher", "worker", "replication-watch"}
    scraped = {}
    for job in prometheus_config()["scrape_configs"]:
        [sd] = job["dns_sd_configs"]  # a service name resolves to every replica's address
        for name in sd["names"]:
            scraped[name] = str(sd["port"])
    assert scraped == with_metrics
    for name, port in with_metrics.items():
        assert services[name]["expose"] == [port], name


def test_compose_replication_watch_watches_the_applied_topology_for_the_farm() -> None:
    services = compose()["services"]
    watch = services["replication-watch"]
    argv = checks.service_argv(watch, image_entrypoint())
    assert check_all_commands([checks.Process("watch", tuple(argv))]) == ["replication watch"]
    topology = argv[argv.index("--topology") + 1]
    applied = checks.service_argv(services["replication-init"], image_entrypoint())[-1]
    assert topology == applied and mounted(watch, topology).is_file()
    env = checks.compose_env(watch)
    assert env["COUCHFARM_FARM"] == checks.compose_env(services["dispatcher"])["COUCHFARM_FARM"]
    assert {"COUCHDB_A_CREDENTIALS", "COUCHDB_B_CREDENTIALS"} <= set(env)


@needs_promtool
def test_promtool_check_config() -> None:
    done = subprocess.run(
        ["promtool", "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- Kubernetes: the Component ----------------------------------------------------------------------


def component() -> list[checks.Manifest]:
    out = []
    for path in sorted(COMPONENT.glob("*.yaml")):
        out += [checks.Manifest(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def base_and_component() -> list[checks.Manifest]:
    return checks.load_manifests() + component()


def test_component_lists_its_files() -> None:
    [kustomization] = [m for m in component() if m.file == "kustomization.yaml"]
    assert kustomization.kind == "Component"
    assert kustomization.doc["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert set(kustomization.doc["resources"]) == {p.name for p in COMPONENT.glob("*.yaml")} - {
        "kustomization.yaml"
    }


@pytest.mark.integration  # runs scripts/prometheus-rule
def test_prometheus_rule_holds_exactly_the_rules_of_alerts_yaml() -> None:
    [rule] = [m for m in component() if m.kind == "PrometheusRule"]
    assert rule.doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule.doc["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]
    check = subprocess.run([sys.executable, str(RULE_SCRIPT), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_the_rule_script_notices_a_stale_file_and_rewrites_it(tmp_path: Path) -> None:
    script = runpy.run_path(str(RULE_SCRIPT))
    stale = tmp_path / "prometheus-rule.yaml"
    stale.write_text(script["render"]().replace("CouchfarmLagGrowing", "CouchfarmLagGrows"))
    assert script["main"](["--check"], stale) == 1
    assert script["main"]([], stale) == 0
    assert script["main"](["--check"], stale) == 0
    assert yaml.safe_load(stale.read_text())["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def pods_with_metrics(items: list[checks.Manifest]) -> dict[str, dict[str, str]]:
    """Workloads whose pods have a container port named metrics: name -> pod labels."""
    out = {}
    for m in items:
        ports = {p["name"] for c in checks.containers(m) for p in c.get("ports", [])}
        if "metrics" in ports:
            out[m.name] = m.doc["spec"]["template"]["metadata"]["labels"]
    return out


def test_pod_monitor_scrapes_dispatchers_workers_and_the_watch() -> None:
    items = base_and_component()
    [monitor] = [m for m in items if m.kind == "PodMonitor"]
    selector = monitor.doc["spec"]["selector"]["matchLabels"].items()
    [endpoint] = monitor.doc["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics"
    scraped = {name for name, labels in pods_with_metrics(items).items() if selector <= labels.items()}
    assert scraped == {"couchfarm-dispatcher", "couchfarm-worker", "couchfarm-replication-watch"}


def test_k8s_replication_watch_runs_a_real_command_with_settings_that_load(tmp_path: Path) -> None:
    items = base_and_component()
    [watch] = [m for m in component() if m.kind == "Deployment"]
    [container] = checks.containers(watch)
    argv = [*image_entrypoint(), *checks.as_argv(container["args"])]
    assert check_all_commands([checks.Process("watch", tuple(argv))]) == ["replication watch"]
    values = secret_values(items)
    env = checks.k8s_env(container, values)
    assert bad_vars([("watch", name) for name in env]) == []
    config_map = next(m for m in items if m.kind == "ConfigMap" and m.name == "couchfarm-config")
    path = tmp_path / "couchfarm.yaml"
    path.write_text(config_map.doc["data"]["couchfarm.yaml"])
    settings = Settings.load(path, env={**env, "COUCHFARM_CONFIG": str(path)})
    [port] = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
    assert settings.metrics_port == port and settings.farm == "main"
    topology = PurePosixPath(argv[argv.index("--topology") + 1])
    [mount] = [v for v in container["volumeMounts"] if topology.is_relative_to(v["mountPath"])]
    [volume] = [v for v in checks.pod_spec(watch)["volumes"] if v["name"] == mount["name"]]
    topologies = next(m for m in items if m.kind == "ConfigMap" and m.name == volume["configMap"]["name"])
    assert topology.name in topologies.doc["data"]
    job = next(m for m in items if m.kind == "Job")
    assert checks.as_argv(checks.containers(job)[0]["args"])[-1] == str(topology), (
        "the topology the Job applies"
    )


def test_overlay_adds_the_component_to_the_base_with_the_same_images() -> None:
    overlay = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    base = next(m for m in checks.load_manifests() if m.kind == "Kustomization").doc
    assert [(OVERLAY / r).resolve() for r in overlay["resources"]] == [checks.K8S]
    assert [(OVERLAY / c).resolve() for c in overlay["components"]] == [COMPONENT]
    assert overlay["images"] == base["images"] and overlay["namespace"] == base["namespace"]


@pytest.mark.integration  # runs kubectl
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (for its kustomize) is not installed")
def test_kustomize_builds_the_farm_with_its_monitoring() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("PrometheusRule", "couchfarm"), ("PodMonitor", "couchfarm")} <= kinds
    assert ("Deployment", "couchfarm-replication-watch") in kinds
    base = subprocess.run(
        ["kubectl", "kustomize", str(checks.K8S)], capture_output=True, text=True, timeout=120
    )
    assert base.returncode == 0, base.stderr
    base_kinds = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(base.stdout) if d}
    assert kinds - base_kinds == {
        ("PrometheusRule", "couchfarm"),
        ("PodMonitor", "couchfarm"),
        ("Deployment", "couchfarm-replication-watch"),
    }
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "couchfarm", d["metadata"]["name"]
    images = {
        c["image"]
        for d in docs
        for c in checks.containers(checks.Manifest("built", d))
        if checks.k8s_is_ours(c)
    }
    assert len(images) == 1, images  # the watch runs the farm's image
