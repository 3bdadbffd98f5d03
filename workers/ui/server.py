"""Serving the UI: credentials checked at start, secrets registered for redaction, uvicorn."""

from __future__ import annotations

import logging
from typing import Any

from couchfarm.errors import ConfigError
from couchfarm.redact import redact_url, register_secret
from couchfarm.settings import Settings
from workers.ui.access import Access
from workers.ui.app import build, create_app

log = logging.getLogger("couchfarm.ui")


def access_for(settings: Settings, *, read_only: bool = False, unauthenticated: bool = False) -> Access:
    """The access rules; ``ConfigError`` without ``ui_user``/``ui_password`` unless ``unauthenticated``."""
    user, password = settings.ui_user, settings.ui_password
    if user and password and password.get_secret_value():
        register_secret(password.get_secret_value())
        return Access(user, password.get_secret_value(), read_only=read_only)
    if not unauthenticated:
        raise ConfigError(
            "couchfarm ui needs COUCHFARM_UI_USER and COUCHFARM_UI_PASSWORD (ui_user / ui_password), "
            "or --unauthenticated to run it open",
            field="ui_password",
        )
    return Access(None, None, read_only=read_only)


def application(
    settings: Settings,
    *,
    dbs: tuple[str, ...] = (),
    read_only: bool = False,
    unauthenticated: bool = False,
) -> Any:
    """The ASGI application for these settings (``ConfigError`` when credentials are missing)."""
    access = access_for(settings, read_only=read_only, unauthenticated=unauthenticated)
    for url in (settings.couch_url, settings.redis_url, settings.broker_url, settings.result_url):
        if url:
            redact_url(url)  # registers the password it holds, so no error message shows it
    if settings.couch_password:
        register_secret(settings.couch_password.get_secret_value())
    return create_app(build(settings, access, dbs))


def serve(app: Any, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_config=None, server_header=False, proxy_headers=False)
