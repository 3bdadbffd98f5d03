"""CouchDB over mutual TLS: pouchdb-server behind a TLS proxy that requires a client certificate."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from couchfarm import factory
from couchfarm.couch import CouchClient
from couchfarm.replication.endpoints import node_clients
from couchfarm.replication.expand import load_topology
from couchfarm.replication.render import resolve_credentials
from couchfarm.tls import TLSError
from tests.helpers import wait_for
from tests.tls.certs import Certs
from tests.tls.conftest import couch_env, settings
from tests.tls.proxy import TLSProxy
from workers.local_servers import PouchServer


def no_key_material(text: str, certs: Certs) -> None:
    """Neither a PEM block nor any line of a private key file appears in ``text``."""
    assert "-----BEGIN" not in text and "PRIVATE KEY" not in text
    leaked = [line for line in certs.key_texts() if line in text]
    assert not leaked, "key material in the logs"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture, certs: Certs) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record of the test at DEBUG, checked for key material at the end."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    no_key_material(caplog.text, certs)


@contextlib.contextmanager
def tls_client(https_url: str, **env: str) -> Iterator[CouchClient]:
    """The farm's client, built from settings as the farm does, its sockets closed afterwards."""
    couch = factory.couch_client(settings(COUCHFARM_COUCH_URL=https_url, **env))
    try:
        yield couch
    finally:
        couch.http.session.close()


def test_the_right_client_certificate_opens_the_connection(
    https_url: str, certs: Certs, logs: pytest.LogCaptureFixture
) -> None:
    with tls_client(https_url, **couch_env(certs)) as couch:
        db = f"tls{uuid.uuid4().hex[:10]}"
        couch.create_db(db)
        couch.put(db, {"_id": "greeting", "text": "over TLS"})
        assert couch.get(db, "greeting")["text"] == "over TLS"
        couch.delete_db(db)


def test_without_a_client_certificate_the_error_says_so(
    https_url: str, couch_proxy: TLSProxy, certs: Certs, logs: pytest.LogCaptureFixture
) -> None:
    refused = len(couch_proxy.refused)
    with (
        tls_client(https_url, COUCHFARM_COUCH_CA_FILE=str(certs.ca)) as couch,
        pytest.raises(TLSError) as caught,
    ):
        couch.all_dbs()
    assert str(caught.value) == (
        f"TLS handshake with https://127.0.0.1:{couch_proxy.port} failed: certificate required. "
        "The server asks for a client certificate: set couch_cert_file and couch_key_file."
    )
    assert caught.value.field == "couch_cert_file"
    # the proxy's thread records the refusal after the client already has its alert (TLS 1.3)
    wait_for(lambda: couch_proxy.refused[refused:], 10, "the proxy recorded the refused handshake")
    time.sleep(0.5)  # a retry, were there one, would be refused again by now
    assert couch_proxy.refused[refused:] == ["PEER_DID_NOT_RETURN_A_CERTIFICATE"]  # final: not retried


@pytest.mark.parametrize(
    ("case", "words", "field"),
    [
        (
            "unknown server CA",
            "certificate verify failed: self-signed certificate in certificate chain. "
            "Set couch_ca_file to the CA bundle",
            "couch_ca_file",
        ),
        (
            "client cert from another CA",
            "the server does not trust our client certificate (unknown CA)",
            "couch_cert_file",
        ),
    ],
)
def test_an_untrusted_certificate_on_either_side_is_a_clear_error(
    https_url: str, certs: Certs, logs: pytest.LogCaptureFixture, case: str, words: str, field: str
) -> None:
    env = couch_env(certs)
    if case == "unknown server CA":
        env.pop("COUCHFARM_COUCH_CA_FILE")  # verify is on: the system CAs do not know the test CA
    else:
        env.update(
            COUCHFARM_COUCH_CERT_FILE=str(certs.other_client_cert),
            COUCHFARM_COUCH_KEY_FILE=str(certs.other_client_key),
        )
    with tls_client(https_url, **env) as couch, pytest.raises(TLSError) as caught:
        couch.server_info()
    assert words in str(caught.value) and caught.value.field == field
    assert "Traceback" not in str(caught.value) and "secret" not in str(caught.value)


def test_couch_verify_false_logs_a_warning_at_start(https_url: str, certs: Certs, db_on_tls: str) -> None:
    """``couchfarm scan`` (any command) with verification off: it warns, then works."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUCHFARM_")}
    env.update(
        COUCHFARM_COUCH_URL=https_url,
        COUCHFARM_COUCH_VERIFY="false",
        COUCHFARM_COUCH_CERT_FILE=str(certs.client_cert),
        COUCHFARM_COUCH_KEY_FILE=str(certs.client_key),
    )
    out = subprocess.run(
        [sys.executable, "-m", "workers", "scan", db_on_tls],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    server = https_url.split("@")[-1]
    assert (
        f"WARNING couchfarm.tls: couch_verify is off: the certificate of https://{server} is not checked"
        in (out.stderr)
    )
    assert "0 conflicted document(s)" in out.stderr and "InsecureRequestWarning" not in out.stderr
    no_key_material(out.stdout + out.stderr, certs)


@pytest.fixture
def db_on_tls(https_url: str, certs: Certs) -> Iterator[str]:
    name = f"tls{uuid.uuid4().hex[:10]}"
    with tls_client(https_url, **couch_env(certs)) as couch:
        couch.create_db(name)
        yield name
        couch.delete_db(name)


def test_topology_nodes_carry_their_own_tls(
    https_url: str,
    pouch_server: PouchServer,
    couch_proxy: TLSProxy,
    certs: Certs,
    tmp_path: Path,
    logs: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            nodes:
              hub:
                url: "https://127.0.0.1:{couch_proxy.port}"
                auth: {{env: HUB_CREDENTIALS}}
                tls: {{ca: {certs.ca}, cert: {certs.client_cert}, key: {certs.client_key}}}
              bare:
                url: "https://127.0.0.1:{couch_proxy.port}/"
                auth: {{env: HUB_CREDENTIALS}}
                tls: {{ca: {certs.ca}}}
            databases: [shared]
            links:
              - {{hub: hub, continuous: true}}
            """
        )
    )
    topo = load_topology(path)
    creds = resolve_credentials(topo, {"HUB_CREDENTIALS": f"{pouch_server.user}:{pouch_server.password}"})
    clients = node_clients(topo, creds)
    try:
        assert "_users" in clients["hub"].all_dbs()
        with pytest.raises(TLSError) as caught:
            clients["bare"].all_dbs()
        assert str(caught.value).startswith(
            f"TLS handshake with https://127.0.0.1:{couch_proxy.port} failed: certificate required. "
            "The server asks for a client certificate: set nodes.bare.tls.cert and nodes.bare.tls.key"
        )
    finally:
        for couch in clients.values():
            couch.http.session.close()
