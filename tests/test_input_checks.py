"""The checks behind ``test_bad_input``, without servers: URLs, passwords, YAML files, database names,
contradicting settings, Mango selectors and terminal escaping."""

from __future__ import annotations

import pytest

from couchfarm.redact import redact, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://admin:p@ss:w/rd#x%y@127.0.0.1:5984", "http://admin:***@127.0.0.1:5984"),
        ("http://u:pa#ss@h/db", "http://u:***@h/db"),
        ("http://u:p/ss@h:1/db", "http://u:***@h:1/db"),
        ("http://u:p%40w@[::1]:5984/x", "http://u:***@[::1]:5984/x"),
        ("http://u@h:1", "http://u@h:1"),
        ("http://h/a@b", "http://h/a@b"),
        ("http://h:1/a@b", "http://h:***@b"),  # ambiguous: "1/a" may be a password with a raw /
        ("not a url", "not a url"),
    ],
)
def test_redact_url_never_raises_and_never_leaves_a_piece(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(f"see {url} now") == f"see {shown} now"
