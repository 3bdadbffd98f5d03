"""deploy/grafana/couchfarm.json: a dashboard that can be imported as it is (datasource, farm and
database variables), whose queries parse as PromQL, use only metrics and labels couchfarm exports or
the rules record, filter by the selected farm (and databases), and cover what an operator looks at.
Whether a live farm exports those metrics: test_live.py."""

from __future__ import annotations

import itertools
import re

import pytest

from tests.prometheus import promql
from tests.prometheus.rules import (
    dashboard,
    dashboard_queries,
    labels_of,
    panels,
    records,
    variable_queries,
)

#: what the dashboard must show (docs/operations.md, "Alerts and dashboard")
SHOWN = {
    "farm_db:couchfarm_conflicts_detected:rate5m": "conflicts found per second",
    "farm_db_outcome:couchfarm_documents:rate5m": "resolved and dead-lettered per second",
    "farm_db_le:couchfarm_resolution_latency_seconds_bucket:rate5m": "latency p50/p99",
    "couchfarm_lag": "lag per database",
    "couchfarm_checkpoint_age_seconds": "checkpoint age per database",
    "couchfarm_batches_open": "batches open",
    "couchfarm_up": "worker and dispatcher counts",
    "couchfarm_breaker_state": "breaker state",
    "couchfarm_redis_memory_used_bytes": "Redis memory",
}


def test_variables_datasource_farm_and_database() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["farm"]["type"] == "query" and not variables["farm"]["includeAll"]
    assert variables["db"]["multi"] and variables["db"]["includeAll"] and variables["db"]["allValue"] == ".*"
    for name, selector, label in variable_queries():
        [sel] = promql.selectors(selector)
        assert label in (labels_of(sel.name) or set()), f"variable {name}: {sel.name} has no label {label}"
        if name == "db":
            assert ("farm", "=~", "$farm") in sel.matchers, "the database list follows the selected farm"


def test_every_panel_uses_the_datasource_variable() -> None:
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]), panel["title"]


def test_every_query_parses_and_uses_declared_metrics_and_labels() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 15
    for title, expr in queries:
        try:
            promql.check(expr, labels_of)
        except (promql.PromQLError, ValueError) as exc:
            raise AssertionError(f"panel {title!r}: {exc}") from None


def filter_problems(expr: str) -> list[str]:
    """Selectors of ``expr`` that do not follow the farm (and database) variables."""
    out = []
    for sel in promql.selectors(expr):
        if ("farm", "=~", "$farm") not in sel.matchers:
            out.append(f"{sel.name} not filtered by farm")
        if "db" in (labels_of(sel.name) or set()) and ("db", "=~", "$db") not in sel.matchers:
            out.append(f"{sel.name} not filtered by db")
    return out


def test_every_selector_filters_by_the_selected_farm_and_databases() -> None:
    for title, expr in dashboard_queries():
        assert filter_problems(expr) == [], f"panel {title!r}"


def test_only_defined_variables_are_used() -> None:
    defined = {v["name"] for v in dashboard()["templating"]["list"]} | {"__rate_interval", "__interval"}
    for title, expr in dashboard_queries():
        used = set(re.findall(r"\$(\w+)", expr))
        assert used <= defined, f"panel {title!r}: undefined {used - defined}"


def test_recorded_series_are_the_rules_and_rates_come_from_them() -> None:
    used = {s.name for _, expr in dashboard_queries() for s in promql.selectors(expr)}
    assert {name for name in used if ":" in name} <= set(records())
    for title, expr in dashboard_queries():
        assert "rate(" not in expr, f"panel {title!r}: rates come from the recording rules"


def test_the_dashboard_shows_what_an_operator_needs() -> None:
    used = {s.name for _, expr in dashboard_queries() for s in promql.selectors(expr)}
    missing = {name: what for name, what in SHOWN.items() if name not in used}
    assert not missing, missing
    quantiles = {
        q for _, expr in dashboard_queries() for q in re.findall(r"histogram_quantile\((0\.\d+)", expr)
    }
    assert quantiles == {"0.5", "0.99"}


def test_panels_do_not_overlap_and_fit_the_grid() -> None:
    boxes = [(p["title"], p["gridPos"]) for p in panels()]
    for title, g in boxes:
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, title
    for (a, ga), (b, gb) in itertools.combinations(boxes, 2):
        apart = (
            ga["x"] + ga["w"] <= gb["x"]
            or gb["x"] + gb["w"] <= ga["x"]
            or ga["y"] + ga["h"] <= gb["y"]
            or gb["y"] + gb["h"] <= ga["y"]
        )
        assert apart, f"panels {a!r} and {b!r} overlap"
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))


def test_the_checks_catch_a_missing_filter_or_a_label_the_metric_lacks() -> None:
    assert filter_problems('max(couchfarm_lag{farm=~"$farm"})') == ["couchfarm_lag not filtered by db"]
    assert filter_problems('max(couchfarm_up{role="worker"})') == ["couchfarm_up not filtered by farm"]
    with pytest.raises(promql.PromQLError, match="no label db"):
        promql.check('max(couchfarm_breaker_state{farm=~"$farm", db=~"$db"})', labels_of)
