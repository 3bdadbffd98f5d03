"""TLS files are read at start: a bad one is a ConfigError naming the setting (or topology key), the
path and where the value came from, before any connection is tried."""

from __future__ import annotations

import logging
import shutil
import ssl
import textwrap
from pathlib import Path

import pytest
from celery import Celery

from couchfarm import factory
from couchfarm.errors import ConfigError
from couchfarm.replication.errors import TopologyError
from couchfarm.replication.expand import load_topology
from couchfarm.settings import Settings
from couchfarm.tls import TLSFiles, handshake_error
from tests.tls.certs import Certs
from tests.tls.conftest import couch_env, redis_env, settings
from workers.celery_app import configure
from workers.local_servers import free_port


def bad_files(certs: Certs, tmp_path: Path) -> list[tuple[dict[str, str], str, str]]:
    """(environment, setting named, words in the message)."""
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("just words\n")
    missing = str(tmp_path / "nope" / "client.pem")
    return [
        ({"COUCHFARM_COUCH_CERT_FILE": missing}, "couch_cert_file", f"cannot read {missing}: No such file"),
        ({"COUCHFARM_COUCH_CA_FILE": str(tmp_path)}, "couch_ca_file", f"{tmp_path} is a directory"),
        ({"COUCHFARM_REDIS_CA_FILE": str(not_pem)}, "redis_ca_file", f"{not_pem} is not a PEM file"),
        ({"COUCHFARM_REDIS_CA_FILE": str(certs.client_key)}, "redis_ca_file", "holds no CA certificate"),
        ({"COUCHFARM_COUCH_KEY_FILE": str(certs.client_key)}, "couch_key_file", "needs its certificate"),
        (
            couch_env(certs, COUCHFARM_COUCH_KEY_FILE=str(certs.other_client_key)),
            "couch_key_file",
            f"{certs.other_client_key} is not the key of the certificate in {certs.client_cert}",
        ),
        (
            redis_env(certs, COUCHFARM_REDIS_KEY_FILE=str(certs.encrypted_key)),
            "redis_key_file",
            "holds an encrypted key",
        ),
        (
            {"COUCHFARM_COUCH_CERT_FILE": str(certs.client_cert)},
            "couch_key_file",
            f"couch_cert_file {certs.client_cert} holds no private key",
        ),
    ]


def test_bad_files_fail_at_load_naming_setting_path_and_source(certs: Certs, tmp_path: Path) -> None:
    for env, field, words in bad_files(certs, tmp_path):
        with pytest.raises(ConfigError) as caught:
            settings(**env)
        message = str(caught.value)
        assert caught.value.field == field and words in message, (env, message)
        source = (
            "defaults" if field not in {k.lower().removeprefix("couchfarm_") for k in env} else "environment"
        )
        assert f"{field}: " in message and f"(from {source}" in message, message


def test_a_bad_file_in_the_settings_file_names_its_line(certs: Certs, tmp_path: Path) -> None:
    config = tmp_path / "farm.yaml"
    config.write_text(f"couch_url: https://127.0.0.1:6984\ncouch_ca_file: {tmp_path / 'gone.pem'}\n")
    with pytest.raises(ConfigError, match=rf"couch_ca_file: cannot read .*gone.pem.*\(from {config}:2\)"):
        Settings.load(config, env={})


def test_a_file_gone_after_load_fails_when_the_client_is_built(certs: Certs, tmp_path: Path) -> None:
    cert, key = shutil.copy(certs.client_cert, tmp_path), shutil.copy(certs.client_key, tmp_path)
    loaded = settings(
        COUCHFARM_COUCH_URL="https://127.0.0.1:6984",
        COUCHFARM_COUCH_CERT_FILE=str(cert),
        COUCHFARM_COUCH_KEY_FILE=str(key),
    )
    Path(key).unlink()
    with pytest.raises(ConfigError, match=rf"^couch_key_file: cannot read {key}: No such file") as caught:
        factory.couch_client(loaded)
    assert caught.value.field == "couch_key_file"


def write_topology(folder: Path, tls: str) -> Path:
    path = folder / "edge.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            nodes:
              hub: {{url: "https://127.0.0.1:6984"}}
              edge:
                url: "https://127.0.0.1:6985"
                tls: {tls}
            databases: [shared]
            links:
              - {{hub: hub, continuous: true}}
            """
        )
    )
    return path


def test_topology_node_tls_is_checked_at_load_with_file_and_line(certs: Certs, tmp_path: Path) -> None:
    path = write_topology(tmp_path, f"{{ca: {certs.ca}, cert: {tmp_path / 'gone.pem'}, verify: true}}")
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert f"{path}:5: nodes.edge.tls.cert: cannot read {tmp_path / 'gone.pem'}" in str(caught.value)
    typo = write_topology(tmp_path, f"{{ca: {certs.ca}, crt: {certs.client_cert}}}")
    with pytest.raises(TopologyError, match=r"nodes\.edge\.tls\.crt: .*did you mean 'cert'"):
        load_topology(typo)
    good = write_topology(tmp_path, f"{{ca: {certs.ca}, cert: {certs.client_cert}, key: {certs.client_key}}}")
    files = load_topology(good).nodes["edge"].tls.files("edge")  # type: ignore[union-attr]
    assert files.requests_cert() == (str(certs.client_cert), str(certs.client_key))
    assert files.names[1] == "nodes.edge.tls.cert" and files.requests_verify() == str(certs.ca)


def test_celery_gets_the_redis_tls_files_for_broker_and_backend(certs: Certs) -> None:
    url = f"rediss://127.0.0.1:{free_port()}/0"
    app = configure(Celery("tls-test"), settings(COUCHFARM_REDIS_URL=url, **redis_env(certs)))
    expected = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "ssl_ca_certs": str(certs.ca),
        "ssl_certfile": str(certs.client_cert),
        "ssl_keyfile": str(certs.client_key),
    }
    assert app.conf.broker_use_ssl == expected and app.conf.redis_backend_use_ssl == expected
    plain = configure(Celery("plain-test"), settings(COUCHFARM_REDIS_URL="redis://127.0.0.1:6379/0"))
    assert plain.conf.broker_use_ssl is False and plain.conf.redis_backend_use_ssl is None


def test_verify_off_and_files_on_a_plain_url_warn_once(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "couchfarm.tls")
    port = free_port()
    unverified = settings(COUCHFARM_COUCH_URL=f"https://127.0.0.1:{port}", COUCHFARM_COUCH_VERIFY="false")
    factory.couch_client(unverified)
    factory.couch_client(unverified)
    plain = settings(COUCHFARM_COUCH_URL=f"http://127.0.0.1:{port}", COUCHFARM_COUCH_CA_FILE=str(certs.ca))
    factory.couch_client(plain)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"couch_verify is off: the certificate of https://127.0.0.1:{port} is not checked, so anyone on "
        "the network path can pose as the server",
        f"couch_ca_file/couch_cert_file are set but http://127.0.0.1:{port} is not a TLS URL: the "
        "connection is not encrypted",
    ]


def test_a_name_mismatch_points_at_the_url_not_the_ca() -> None:
    """Needs a certificate without 127.0.0.1 in it, which the test PKI has: so the error is built."""
    mismatch = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    mismatch.reason, mismatch.verify_code = "CERTIFICATE_VERIFY_FAILED", 64
    mismatch.verify_message = "IP address mismatch, certificate is not valid for '127.0.0.1'."
    wrapped = ConnectionError("Max retries exceeded")
    wrapped.__context__ = mismatch
    error = handshake_error(wrapped, "https://u:pw@127.0.0.1:6984", TLSFiles.for_settings("couch"))
    assert error is not None and error.field == "" and error.source == "https://127.0.0.1:6984"
    assert str(error) == (
        "TLS handshake with https://127.0.0.1:6984 failed: certificate verify failed: IP address mismatch, "
        "certificate is not valid for '127.0.0.1'. "
        "Put a host name the server's certificate names into the URL."
    )
    assert (
        handshake_error(ConnectionResetError("reset"), "https://127.0.0.1", TLSFiles()) is None
    )  # transient
