"""The rules and the dashboard as files: loaded once for the tests of tests/prometheus and tests/deploy."""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from couchfarm import metrics
from tests.prometheus import promql

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "couchfarm.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
UNIT_TESTS = Path(__file__).resolve().parent / "alerts_test.yaml"

#: runs promtool: the integration tier (tests/tiers.py), skipped where promtool is not installed
needs_promtool = pytest.mark.integration(
    pytest.mark.skipif(
        shutil.which("promtool") is None,
        reason="promtool is not installed (Debian's prometheus package; .ci/run installs it)",
    )
)
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="the prometheus server is not installed (Debian's prometheus package; .ci/run installs it)",
)


@functools.cache
def groups() -> list[dict[str, Any]]:
    data: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    return list(data["groups"])


def rules() -> list[dict[str, Any]]:
    return [rule for group in groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def records() -> dict[str, str]:
    """Recording rules: recorded name -> expression."""
    return {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    out = []
    for panel in dashboard()["panels"]:
        out += [panel, *panel.get("panels", [])]
    return out


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every panel target."""
    return [(p["title"], t["expr"]) for p in panels() for t in p.get("targets", []) if t.get("expr")]


def variable_queries() -> list[tuple[str, str, str]]:
    """(variable, metric selector, label) of each ``label_values(SELECTOR, LABEL)`` variable."""
    out = []
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
        assert match, f"variable {var['name']}: {query!r} is not label_values(selector, label)"
        out.append((var["name"], match[1], match[2]))
    return out


@functools.cache
def declared() -> dict[str, set[str]]:
    """Every series name couchfarm/metrics.py exports, with its labels (histograms: _bucket has le)."""
    out: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        name, labels = obj._name, set(obj._labelnames)
        if obj._type == "counter":
            out[f"{name}_total"] = labels
        elif obj._type == "histogram":
            out |= {f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels}
        else:
            out[name] = labels
    return out


def labels_of(name: str) -> set[str] | None:
    """A raw metric's labels, or a recorded series' (what its rule groups by)."""
    found = declared().get(name)
    if found is not None:
        return found
    if name in records():
        return promql.check(records()[name], labels_of)
    return None
