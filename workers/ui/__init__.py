"""``couchfarm ui``: a small web application for people (Starlette, Jinja2 with autoescape, uvicorn).

Only ``workers`` imports this package; it reads the library (``couchfarm``) and the farm's wiring
(``workers.farm``, ``workers.cli_status.status_report``). Modules:

- ``app``: the application, its routes and the state every view shares;
- ``access``: basic auth, CSRF tokens, signed flash messages, security headers, read-only mode;
- ``stores``: every Redis-backed object the UI uses, built in one place;
- ``render``: the Jinja2 environment and its filters;
- ``conflicts``, ``diff``: a database's conflicted documents; a document's leaves compared field by field;
- ``views_farm``, ``views_doc``, ``views_dlq``, ``views_why``: the pages and their actions;
- ``templates/``, ``static/`` (with ``static/vendor/``: uPlot, vendored from npm).
"""
