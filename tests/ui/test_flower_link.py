"""A dead letter's Flower task links to its page in ``couchfarm ui`` only when ``ui_url`` is set."""

from __future__ import annotations

from typing import Any

import pytest

from couchfarm.deadletters import DeadLetter
from couchfarm.settings import Settings
from tasks import context
from tasks.deadletter import dead_letter, ui_link

ENTRY = DeadLetter(
    "orders", "o/1", ["2-a", "2-b"], "fields", "InvalidDocument", "qty < 0", correlation_id="c1"
)


def sent(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> dict[str, Any]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(dead_letter, "apply_async", lambda **kw: calls.append(kw))
    monkeypatch.setattr(context, "_settings", settings)
    context.show_in_flower(ENTRY)
    (call,) = calls
    return call


def test_without_ui_url_the_task_arguments_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    call = sent(monkeypatch, Settings.load(env={"COUCHFARM_FARM": "f1"}))
    assert call["args"] == ["orders", "o/1", "InvalidDocument", "qty < 0", ENTRY.id, "c1"]
    assert call["kwargs"] == {"farm": "f1"} and call["queue"] == "couchfarm.f1"


def test_with_ui_url_the_task_carries_the_entry_link(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"COUCHFARM_UI_URL": "https://ops.example/farm/", "COUCHFARM_FARM": "f1"}
    call = sent(monkeypatch, Settings.load(env=env))
    assert call["args"] == ["orders", "o/1", "InvalidDocument", "qty < 0", ENTRY.id, "c1"]
    assert call["kwargs"] == {"farm": "f1", "ui_link": f"https://ops.example/farm/dead-letters/{ENTRY.id}"}
    assert ui_link("http://h:1", "a/b") == "http://h:1/dead-letters/a%2Fb"
