"""The benchmark's printed table and the targets of issue 15, from the results of one run (pure)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FARM_RATIO = 0.8  #: farm with 2 workers / reference, at least
NAIVE_RATIO = 10.0  #: farm with 2 workers / naive, at least
P50_S, P99_S = 1.0, 5.0  #: trickle latency from creation to resolution, below
WORKER_RSS_MB = 150.0  #: peak RSS of any worker process, below


@dataclass(frozen=True)
class Target:
    """One target: what was asked, what was measured, and whether it is met (None: not measured)."""

    name: str
    measured: str
    met: bool | None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not measured"}[self.met]


def rows(r: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = [("reference (1 process)", r["reference"]), ("naive (per document)", r["naive"])]
    return out + [(f"couchfarm, {f['workers']} worker(s)", f) for f in r["farm"]]


def ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def farm_with(r: dict[str, Any], workers: int) -> dict[str, Any] | None:
    return next((f for f in r["farm"] if f["workers"] == workers), None)


def worker_rss(r: dict[str, Any]) -> float | None:
    """The highest peak RSS of any worker process in any farm run."""
    peaks = [mb for f in r["farm"] for mb in f.get("rss_mb", {}).get("worker", [])]
    return max(peaks) if peaks else None


def targets(r: dict[str, Any]) -> list[Target]:
    """The targets of issue 15, item 3, against this run's numbers."""
    two = farm_with(r, 2)
    out = []
    for name, goal in (("reference", FARM_RATIO), ("naive", NAIVE_RATIO)):
        x = None if two is None else ratio(two["docs_per_s"], r[name]["docs_per_s"])
        absent = "no 2-worker run" if two is None else "-"
        out.append(
            check(f"farm (2 workers) >= {goal:g} x {name}", x, "{:.2f} x", at_least=goal, absent=absent)
        )
    t = r.get("trickle") or {}
    for key, limit in (("p50_s", P50_S), ("p99_s", P99_S)):
        out.append(check(f"trickle {key[:3]} < {limit:g} s", t.get(key), "{} s", below=limit))
    rss = worker_rss(r)
    out.append(check(f"worker RSS < {WORKER_RSS_MB:g} MB", rss, "{} MB", below=WORKER_RSS_MB))
    return out


def check(
    name: str,
    value: float | None,
    fmt: str,
    *,
    at_least: float | None = None,
    below: float | None = None,
    absent: str = "-",
) -> Target:
    """``name`` with ``value`` shown by ``fmt``, met when ``value >= at_least`` / ``value < below``;
    not measured when ``value`` is None."""
    if value is None:
        return Target(name, absent, None)
    met = (at_least is None or value >= at_least) and (below is None or value < below)
    return Target(name, fmt.format(value), met)


def table(r: dict[str, Any]) -> list[str]:
    """Each way: documents, seconds, docs/s, ratio to the reference and to naive, documents left
    conflicted, and the server's CPU per resolved document."""
    ref, nai = r["reference"]["docs_per_s"], r["naive"]["docs_per_s"]
    lines = [
        f"{'way':<26}{'docs':>6}{'seconds':>9}{'docs/s':>9}{'/ref':>7}{'/naive':>8}{'left':>6}"
        f"{'server CPU ms/doc':>19}{'busy':>7}"
    ]
    for name, row in rows(r):
        per_doc = row.get("server_cpu_s_per_doc")
        cpu = "-" if per_doc is None else f"{per_doc * 1000:.2f}"
        busy = "-" if row.get("server_busy") is None else f"{row['server_busy']:.0%}"
        to_ref, to_naive = ratio(row["docs_per_s"], ref), ratio(row["docs_per_s"], nai)
        lines.append(
            f"{name:<26}{row['docs']:>6}{row['seconds']:>9}{row['docs_per_s']:>9}"
            f"{_x(to_ref, 2):>7}{_x(to_naive, 1):>8}{row['left_conflicted']:>6}{cpu:>19}{busy:>7}"
        )
    return lines


def _x(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(r: dict[str, Any]) -> None:
    print(f"\ncouchfarm benchmark: {r['docs']} conflicted documents x {r['leaves']} leaves, ~1 KB bodies")
    print(f"server CPU: {r['server_process']}")
    print("\n".join(table(r)))
    tally = r["reference"].get("tally", {})
    if tally:
        print(
            f"\nreference: {tally['requests']} requests for {tally['docs']} documents; "
            f"{tally['leaves_requested']} losing leaves requested by explicit rev, "
            f"{tally['leaves_missing']} not returned; {tally['write_errors']} write errors"
        )
        print(
            f"reference thread seconds: feed {tally['feed_s']:.2f}, _bulk_get {tally['bulk_get_s']:.2f}, "
            f"merge {tally['merge_s']:.2f}, _bulk_docs {tally['bulk_docs_s']:.2f}; "
            f"feed reader waiting for a free page slot {tally['window_full_s']:.2f}"
        )
    t = r["trickle"]
    print(
        f"\ntrickle of {t['rate_per_s']}/s: {t['resolved']} resolved, p50 {t['p50_s']} s, p99 {t['p99_s']} s"
    )
    print("\npeak RSS (MB):")
    for f in r["farm"]:
        print(f"  {f['workers']} worker(s): " + ", ".join(f"{k} {v}" for k, v in f["rss_mb"].items()))
    if "server_rss_mb" in r:
        print(f"  pouchdb-server {r['server_rss_mb']}, redis-server {r['redis_rss_mb']}")
    print(f"\n{'target (issue 15)':<40}{'measured':>12}  verdict")
    for target in targets(r):
        print(f"{target.name:<40}{target.measured:>12}  {target.verdict}")


def targets_json(r: dict[str, Any]) -> list[dict[str, Any]]:
    return [asdict(t) | {"verdict": t.verdict} for t in targets(r)]
