"""deploy/prometheus/alerts.yaml: valid for Prometheus (promtool check rules), right on input series
(promtool test rules, tests/prometheus/alerts_test.yaml: every alert fires when it should and stays quiet
when it should not), and complete: a severity, a ``for:`` window, a runbook section per alert, results
grouped by farm (and database), every metric and label one that couchfarm/metrics.py declares.
Whether a live farm really exports them: test_live.py."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.prometheus import promql
from tests.prometheus.rules import (
    ALERTS,
    RUNBOOK,
    UNIT_TESTS,
    alerts,
    groups,
    labels_of,
    needs_promtool,
    records,
    rules,
)

SEVERITIES = {"critical", "warning"}
#: alerts about the whole farm although built on per-database metrics (queued batches wait for any worker)
FARM_WIDE = {"CouchfarmWorkersNotConsuming"}


@needs_promtool
def test_promtool_check_rules() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    done = subprocess.run(
        ["promtool", "test", "rules", str(UNIT_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def unit_cases() -> list[dict[str, Any]]:
    return [
        case
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_stays_quiet() -> None:
    cases = unit_cases()
    for alert in alerts():
        name, severity = alert["alert"], alert["labels"]["severity"]
        fired = [
            e
            for c in cases
            if c["alertname"] == name
            for e in c["exp_alerts"]
            if e["exp_labels"]["severity"] == severity
        ]
        quiet = [c for c in cases if c["alertname"] == name and c["exp_alerts"] == []]
        assert fired, f"{name} ({severity}): no unit test where it fires"
        assert quiet, f"{name}: no unit test where it stays quiet"
    assert {c["alertname"] for c in cases} <= {a["alert"] for a in alerts()}


def test_unit_tests_load_the_shipped_rules_file() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())
    assert [(UNIT_TESTS.parent / f).resolve() for f in tests["rule_files"]] == [ALERTS]


def runbook_sections() -> list[str]:
    return re.findall(r"^## (\S+)$", RUNBOOK.read_text(), flags=re.M)


def test_every_alert_has_severity_window_and_a_runbook_section() -> None:
    sections = runbook_sections()
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert re.fullmatch(r"\d+[smh]", alert["for"]), f"{name}: every alert waits a for: window"
        notes = alert["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, name
        assert notes["runbook_url"] == f"docs/runbook.md#{name.lower()}", name
        assert name in sections, f"docs/runbook.md has no section ## {name}"
        assert "{{ $labels.farm }}" in notes["summary"], f"{name}: the summary names the farm"
    assert sorted(set(sections)) == sorted({a["alert"] for a in alerts()}), (
        "a runbook section without its alert"
    )


def test_every_runbook_section_says_what_it_means_and_what_to_do() -> None:
    text = RUNBOOK.read_text()
    for name in runbook_sections():
        body = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Means**", "**Check**", "**Act**"):
            assert part in body, f"docs/runbook.md {name}: no {part}"


def test_every_rule_uses_declared_metrics_and_labels_and_keeps_farm_and_db() -> None:
    for rule in rules():
        name = rule.get("alert") or rule["record"]
        result = promql.check(rule["expr"], labels_of)
        assert "farm" in result, f"{name}: its results lose the farm label"
        per_db = any("db" in (labels_of(s.name) or set()) for s in promql.selectors(rule["expr"]))
        if per_db and name not in FARM_WIDE:
            assert "db" in result, (
                f"{name}: built on per-database metrics, its results must name the database"
            )


def test_the_checker_refuses_a_wrong_label_or_metric() -> None:
    with pytest.raises(promql.PromQLError, match="no label database"):
        promql.check('max by (farm) (couchfarm_lag{database="x"})', labels_of)
    with pytest.raises(promql.PromQLError, match="uses \\['database'\\]"):
        promql.check("max by (farm, database) (couchfarm_lag)", labels_of)
    with pytest.raises(promql.PromQLError, match="no metric couchfarm_lags"):
        promql.check("couchfarm_lags", labels_of)
    with pytest.raises(promql.PromQLError, match="on/ignoring"):
        promql.check("couchfarm_lag and on (server) couchfarm_breaker_state", labels_of)


def test_recorded_names_say_their_grouping_and_groups_have_unique_names() -> None:
    for name, expr in records().items():
        level = name.split(":")[0].split("_")
        grouped = promql.check(expr, labels_of)
        assert set(level) == grouped, f"{name}: level {level} but grouped by {sorted(grouped)}"
    assert len({g["name"] for g in groups()}) == len(groups())
