"""The benchmark's table and target verdicts, from hand-made results (no servers, no timing)."""

from __future__ import annotations

from typing import Any

from bench.report import table, targets


def way(docs_per_s: float, cpu: float | None = 0.002) -> dict[str, Any]:
    return {
        "docs": 100,
        "seconds": 1.0,
        "docs_per_s": docs_per_s,
        "left_conflicted": 0,
        "server_cpu_s_per_doc": cpu,
        "server_busy": None if cpu is None else 0.5,
    }


def results(farm2: float, p50: float | None, p99: float, rss: float) -> dict[str, Any]:
    return {
        "reference": way(1000.0),
        "naive": way(50.0),
        "farm": [
            {**way(farm2 / 2), "workers": 1, "rss_mb": {"worker": [rss - 10], "dispatcher": [300.0]}},
            {**way(farm2), "workers": 2, "rss_mb": {"worker": [rss, rss - 1], "dispatcher": [60.0]}},
        ],
        "trickle": {"p50_s": p50, "p99_s": p99},
    }


def verdicts(r: dict[str, Any]) -> dict[str, str]:
    return {t.name: f"{t.measured} {t.verdict}" for t in targets(r)}


def test_every_target_met() -> None:
    assert verdicts(results(farm2=850.0, p50=0.2, p99=1.5, rss=80.0)) == {
        "farm (2 workers) >= 0.8 x reference": "0.85 x met",
        "farm (2 workers) >= 10 x naive": "17.00 x met",
        "trickle p50 < 1 s": "0.2 s met",
        "trickle p99 < 5 s": "1.5 s met",
        "worker RSS < 150 MB": "80.0 MB met",  # the dispatcher's 300 MB is not a worker's
    }


def test_targets_missed_and_unmeasured() -> None:
    got = verdicts(results(farm2=300.0, p50=None, p99=5.0, rss=151.0))
    assert got["farm (2 workers) >= 0.8 x reference"] == "0.30 x NOT met"
    assert got["farm (2 workers) >= 10 x naive"] == "6.00 x NOT met"
    assert got["trickle p50 < 1 s"] == "- not measured"
    assert got["trickle p99 < 5 s"] == "5.0 s NOT met"
    assert got["worker RSS < 150 MB"] == "151.0 MB NOT met"


def test_without_a_two_worker_run_the_ratios_are_not_measured() -> None:
    r = results(farm2=850.0, p50=0.2, p99=1.5, rss=80.0)
    r["farm"] = r["farm"][:1]
    got = verdicts(r)
    assert got["farm (2 workers) >= 0.8 x reference"] == "no 2-worker run not measured"


def test_table_prints_ratios_and_server_cpu_per_document() -> None:
    r = results(farm2=850.0, p50=0.2, p99=1.5, rss=80.0)
    r["naive"] = way(50.0, cpu=None)
    lines = table(r)
    assert lines[0].split()[:7] == ["way", "docs", "seconds", "docs/s", "/ref", "/naive", "left"]
    ref, naive, _, farm2 = (line.split() for line in lines[1:])
    assert ref[-5:] == ["1.00", "20.0", "0", "2.00", "50%"]  # 0.002 s/doc shown as 2.00 ms/doc
    assert naive[-5:] == ["0.05", "1.0", "0", "-", "-"]  # not measurable: a dash, never a zero
    assert farm2[-5:] == ["0.85", "17.0", "0", "2.00", "50%"]
