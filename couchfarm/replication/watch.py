"""Poll replication status and turn changes into events and alerts.

Alerts, and why each matters:
- ``crashing`` / ``failed`` / ``error``: the job is retrying with back-off (data stops flowing, with
  exponentially longer gaps) or has given up for good (a duplicate, a missing filter);
- ``checkpoint_stalled``: the source keeps moving but the checkpoint has not advanced for
  ``stall_after`` seconds, so a restart would redo everything since (or the job is wedged);
- ``write_failures``: ``doc_write_failures`` grew: the target refused documents (a validate function,
  permissions) and those documents will never arrive unless someone acts;
- ``seq_regressed``: a checkpoint or the source sequence went backwards: the source was recreated or
  restored, or checkpoints were reset, so the job re-scans from an earlier point.
Every event goes to every sink (log line, metric hook, webhook); a failing sink never stops the watch.
A relay hook (``relay.py``) sees every poll too: its ``relay_switch`` events go to the same sinks (the
webhook sends them even with ``alerts_only``), it reports on its own relay legs, and a direct link it
relays does not alert again on every further crash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any, Protocol

import requests

from couchfarm.breaker import RetryPolicy
from couchfarm.redact import redact, redact_url, redact_value
from couchfarm.replication.status import ALERT_STATES, ReplicationStatus, seq_number

log = logging.getLogger("couchfarm.replication.watch")


class Severity(str, Enum):
    INFO = "info"  # a transition worth a log line
    WARNING = "warning"  # data flow is degraded: stalled, write failures, sequence went back
    CRITICAL = "critical"  # the job is crashing, failed or in error


@dataclass(frozen=True)
class Event:
    kind: (
        str  #: state | crashing | failed | error | checkpoint_stalled | write_failures | seq_regressed | gone
    )
    severity: Severity
    node: str
    doc_id: str
    message: str
    state: str | None = None
    previous: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def alert(self) -> bool:
        return self.severity is not Severity.INFO

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["severity"] = self.severity.value
        return dict(redact_value(out))


Sink = Callable[[Event], None]
ALWAYS_SENT = ("relay_switch",)  #: event kinds a webhook gets even when it takes only alerts


class RelayHook(Protocol):
    """What the watcher needs from the relay fallback (``relay.Relays``)."""

    @property
    def relayed(self) -> set[tuple[str, str]]:
        """(node, doc_id) of the direct links relayed right now."""
        ...

    def owns(self, doc_id: str) -> bool:
        """Whether ``doc_id`` is a relay leg, reported by the hook instead of the watcher."""
        ...

    def step(self, statuses: list[ReplicationStatus], now: float) -> list[Event]: ...


@dataclass
class _Track:
    """What the watcher remembers of one replication between polls."""

    status: ReplicationStatus
    checkpoint_moved_at: float
    source_at_checkpoint: int | None
    stall_reported: bool = False


@dataclass
class RunSummary:
    polls: int = 0
    events: int = 0
    alerts: int = 0


class Watcher:
    """Compares each poll with the previous one; ``poll`` is one bounded step (tests call it)."""

    def __init__(
        self,
        collect: Callable[[], list[ReplicationStatus]],
        sinks: list[Sink],
        *,
        stall_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        relay: RelayHook | None = None,
    ) -> None:
        self.collect, self.sinks, self.stall_after, self.clock = collect, sinks, stall_after, clock
        self.relay = relay
        self.tracks: dict[tuple[str, str], _Track] = {}

    def poll(self) -> list[Event]:
        """One poll: events for every change since the last one, delivered to every sink."""
        now, events, seen = self.clock(), [], set()
        statuses = self.collect()
        relayed = self.relay.relayed if self.relay else set()
        for status in statuses:
            if self.relay and self.relay.owns(status.doc_id):
                continue
            seen.add(status.key)
            events.extend(self._compare(self.tracks.get(status.key), status, now, status.key in relayed))
        if self.relay:
            events.extend(self.relay.step(statuses, now))
        for key in [k for k in self.tracks if k not in seen]:
            gone = self.tracks.pop(key).status
            events.append(
                Event("gone", Severity.INFO, *key, "the replication document is gone", previous=gone.state)
            )
        for event in events:
            self._deliver(event)
        return events

    def run(
        self,
        *,
        iterations: int | None = None,
        until_idle: bool = False,
        interval: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RunSummary:
        """Poll every ``interval`` s; stop after ``iterations`` polls, or (``until_idle``) after a
        poll that changed nothing; otherwise run until interrupted."""
        summary = RunSummary()
        while True:
            events = self.poll()
            summary.polls += 1
            summary.events += len(events)
            summary.alerts += sum(e.alert for e in events)
            if iterations is not None and summary.polls >= iterations:
                return summary
            if until_idle and summary.polls > 1 and not events:
                return summary
            sleep(interval)

    def _deliver(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:  # a broken sink must never stop the watch
                log.exception("event sink %r failed", sink)

    def _compare(
        self, track: _Track | None, new: ReplicationStatus, now: float, relayed: bool = False
    ) -> list[Event]:
        if track is None:
            self.tracks[new.key] = _Track(new, now, seq_number(new.source_seq))
            return [_state_event(new, None), *_state_alert(new, None)]
        old, events = track.status, []
        if new.state != old.state:
            events += [_state_event(new, old.state), *_state_alert(new, old.state)]
        elif new.state == "crashing" and not relayed and (new.error_count or 0) > (old.error_count or 0):
            events += _state_alert(new, old.state, again=True)
        events += _write_failures(old, new) + _regressions(old, new)
        events += self._stall(track, new, now)
        track.status = new
        return events

    def _stall(self, track: _Track, new: ReplicationStatus, now: float) -> list[Event]:
        old_cp, new_cp = seq_number(track.status.checkpointed_seq), seq_number(new.checkpointed_seq)
        head = seq_number(new.source_seq)
        if new_cp != old_cp or new.state != "running":
            track.checkpoint_moved_at, track.source_at_checkpoint = now, head
            track.stall_reported = False
            return []
        moved = (
            head is not None and track.source_at_checkpoint is not None and head > track.source_at_checkpoint
        )
        behind = head is not None and (new_cp is None or new_cp < head)
        if (
            not (moved and behind)
            or track.stall_reported
            or now - track.checkpoint_moved_at < self.stall_after
        ):
            return []
        track.stall_reported = True
        waited = now - track.checkpoint_moved_at
        return [
            _event(
                new,
                "checkpoint_stalled",
                Severity.WARNING,
                f"checkpoint stuck at {_seq(new.checkpointed_seq)} for {waited:.0f}s while the source "
                f"moved from {track.source_at_checkpoint} to {head}",
                checkpointed_seq=new.checkpointed_seq,
                source_seq=new.source_seq,
            )
        ]


def _event(status: ReplicationStatus, kind: str, severity: Severity, message: str, **data: Any) -> Event:
    return Event(kind, severity, status.node, status.doc_id, redact(message), status.state, None, data)


def _state_event(new: ReplicationStatus, previous: str | None) -> Event:
    text = f"{previous} -> {new.state}" if previous else f"seen {new.state}"
    return Event("state", Severity.INFO, new.node, new.doc_id, text, new.state, previous)


def _state_alert(new: ReplicationStatus, previous: str | None, *, again: bool = False) -> list[Event]:
    if new.state not in ALERT_STATES:
        return []
    how = f"crashed again (error_count {new.error_count})" if again else f"is {new.state}"
    message = redact(f"{new.doc_id} {how}" + (f": {new.reason}" if new.reason else ""))
    data = {"reason": new.reason, "error_count": new.error_count}
    return [Event(new.state, Severity.CRITICAL, new.node, new.doc_id, message, new.state, previous, data)]


def _write_failures(old: ReplicationStatus, new: ReplicationStatus) -> list[Event]:
    before, after = old.doc_write_failures or 0, new.doc_write_failures or 0
    if after <= before:
        return []
    return [
        _event(
            new,
            "write_failures",
            Severity.WARNING,
            f"doc_write_failures grew from {before} to {after}: the target refused documents",
            before=before,
            after=after,
        )
    ]


def _regressions(old: ReplicationStatus, new: ReplicationStatus) -> list[Event]:
    events = []
    for name in ("checkpointed_seq", "source_seq"):
        before, after = seq_number(getattr(old, name)), seq_number(getattr(new, name))
        if before is not None and after is not None and after < before:
            events.append(
                _event(
                    new,
                    "seq_regressed",
                    Severity.WARNING,
                    f"{name} went backwards from {before} to {after}",
                    field=name,
                    before=getattr(old, name),
                    after=getattr(new, name),
                )
            )
    return events


def _seq(seq: Any) -> str:
    text = str(seq)
    return text if len(text) <= 16 else text[:13] + "..."


def log_sink(logger: logging.Logger = log) -> Sink:
    """One structured log line per event, at a level that matches its severity."""
    levels = {
        Severity.INFO: logging.INFO,
        Severity.WARNING: logging.WARNING,
        Severity.CRITICAL: logging.ERROR,
    }

    def sink(event: Event) -> None:
        logger.log(
            levels[event.severity],
            "%s %s: %s",
            event.kind,
            event.doc_id,
            event.message,
            extra={
                "node": event.node,
                "doc_id": event.doc_id,
                "event": event.kind,
                "severity": event.severity.value,
            },
        )

    return sink


class WebhookSink:
    """POSTs each event as JSON; transient failures (network, 5xx, 429) are retried with backoff,
    then the event is dropped with a warning: an unreachable webhook must not stall the watch."""

    def __init__(
        self,
        url: str,
        *,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 5.0,
        alerts_only: bool = False,
    ) -> None:
        self.url, self.session = url, session or requests.Session()
        self.retry, self.sleep, self.timeout = retry or RetryPolicy(3, 0.5, 5.0), sleep, timeout
        self.alerts_only = alerts_only
        redact_url(url)  # registers a password in the webhook URL as a secret

    def __call__(self, event: Event) -> None:
        if self.alerts_only and not event.alert and event.kind not in ALWAYS_SENT:
            return
        for attempt in range(self.retry.attempts):
            if attempt:
                self.sleep(self.retry.delay(attempt - 1))
            try:
                resp = self.session.post(self.url, json=event.as_json(), timeout=self.timeout)
            except requests.RequestException as exc:
                problem = type(exc).__name__
                continue
            if resp.status_code < 400:
                return
            problem = f"HTTP {resp.status_code}"
            if resp.status_code < 500 and resp.status_code != 429:
                break
        log.warning(
            "webhook %s dropped the %s event for %s: %s",
            redact_url(self.url),
            event.kind,
            event.doc_id,
            problem,
        )
