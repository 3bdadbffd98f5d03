"""Throw-away PKI for the TLS tests: a CA, a server certificate for 127.0.0.1 (and localhost), a client
certificate, and a second CA with its own client (what a server must refuse), made with cryptography."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Certs:
    """Paths of PEM files; ``*_key`` files hold unencrypted keys, as couchfarm needs them."""

    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  #: a CA nobody trusts
    other_client_cert: Path  #: signed by ``other_ca``
    other_client_key: Path
    encrypted_key: Path  #: the client key under a password (couchfarm refuses it)

    def key_texts(self) -> list[str]:
        """The base64 body lines of every private key, to look for in captured logs."""
        keys = (self.server_key, self.client_key, self.other_client_key, self.encrypted_key)
        return [line for p in keys for line in p.read_text().splitlines() if line and "-----" not in line]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(
    cn: str, key: Key, issuer: tuple[str, Key] | None, *, ca: bool = False, server: bool = False
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_cn, issuer_key = issuer or (cn, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    else:
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    if server:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _write_key(path: Path, key: Key, password: bytes | None = None) -> Path:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def make_certs(folder: Path) -> Certs:
    """Write the whole PKI into ``folder`` (EC P-256 keys: fast to make)."""
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("ca", "srv", "cli", "oca", "ocli")}
    ca = _issue("couchfarm test CA", keys["ca"], None, ca=True)
    other = _issue("untrusted test CA", keys["oca"], None, ca=True)
    server = _issue("127.0.0.1", keys["srv"], ("couchfarm test CA", keys["ca"]), server=True)
    client = _issue("couchfarm worker", keys["cli"], ("couchfarm test CA", keys["ca"]))
    stranger = _issue("couchfarm stranger", keys["ocli"], ("untrusted test CA", keys["oca"]))
    return Certs(
        dir=folder,
        ca=_write_cert(folder / "ca.pem", ca),
        server_cert=_write_cert(folder / "server.pem", server),
        server_key=_write_key(folder / "server.key", keys["srv"]),
        client_cert=_write_cert(folder / "client.pem", client),
        client_key=_write_key(folder / "client.key", keys["cli"]),
        other_ca=_write_cert(folder / "other-ca.pem", other),
        other_client_cert=_write_cert(folder / "other-client.pem", stranger),
        other_client_key=_write_key(folder / "other-client.key", keys["ocli"]),
        encrypted_key=_write_key(folder / "client-encrypted.key", keys["cli"], b"not-a-setting"),
    )
