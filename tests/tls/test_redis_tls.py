"""Redis over mutual TLS (``rediss://``): the farm's state client, and its errors in words."""

from __future__ import annotations

import contextlib
import logging

import pytest

from couchfarm.tls import TLSError
from tests.tls.certs import Certs
from tests.tls.conftest import TLSRedis, redis_env, settings
from tests.tls.test_couch_tls import no_key_material
from workers.farm import farm_state


def test_the_state_client_works_over_tls(
    rediss_url: str, tls_redis: TLSRedis, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    state = farm_state(settings(COUCHFARM_REDIS_URL=rediss_url, **redis_env(certs)))
    with contextlib.closing(state.redis):
        lease = state.acquire("tlsdb", "host:1:tls", ttl=30)
        assert lease is not None, f"no lease over TLS ({tls_redis.path} path)"
        assert state.holder("tlsdb")[0] == lease.owner and lease.owner.startswith("host:1:tls#")
    no_key_material(caplog.text, certs)


@pytest.mark.parametrize(
    ("case", "words", "field"),
    [
        (
            "no client certificate",
            "failed: certificate required. The server asks for a client "
            "certificate: set redis_cert_file and redis_key_file.",
            "redis_cert_file",
        ),
        (
            "unknown server CA",
            "failed: certificate verify failed: self-signed certificate in certificate "
            "chain. Set redis_ca_file",
            "redis_ca_file",
        ),
    ],
)
def test_a_bad_tls_setup_fails_at_start_in_words(
    rediss_url: str, tls_redis: TLSRedis, certs: Certs, case: str, words: str, field: str
) -> None:
    env = redis_env(certs)
    if case == "no client certificate":
        del env["COUCHFARM_REDIS_CERT_FILE"], env["COUCHFARM_REDIS_KEY_FILE"]
    else:
        del env["COUCHFARM_REDIS_CA_FILE"]
    with pytest.raises(TLSError) as caught:
        farm_state(settings(COUCHFARM_REDIS_URL=rediss_url, **env))
    assert str(caught.value).startswith(f"TLS handshake with {rediss_url} {words}"), (
        tls_redis.path,
        caught.value,
    )
    assert caught.value.field == field


def test_redis_verify_false_warns_and_connects(
    rediss_url: str, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "couchfarm.tls")
    env = redis_env(certs, COUCHFARM_REDIS_VERIFY="false", COUCHFARM_REDIS_CA_FILE=str(certs.other_ca))
    state = farm_state(settings(COUCHFARM_REDIS_URL=rediss_url, **env))
    with contextlib.closing(state.redis):
        assert state.redis.ping()
    assert f"redis_verify is off: the certificate of {rediss_url} is not checked" in caplog.text
