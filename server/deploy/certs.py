"""Key material for a deployment: a CA, the SuperLink's TLS certificate, the platforms' key pairs.

Everything is made with ``cryptography`` (no ``openssl`` on the path needed) in the
formats Flower 1.42 reads:

* ``ca.crt`` / ``ca.key`` - the federation's private certificate authority. The coordinator
  keeps ``ca.key``; ``ca.crt`` goes to every operator (``--root-certificates``).
* ``server.pem`` / ``server.key`` - the SuperLink's certificate, signed by the CA, with a
  subject alternative name for every host name or IP address the platforms dial (TLS
  checks the SAN, not the common name).
* ``<name>.key`` / ``<name>.pub`` - a platform's authentication key pair: ECDSA P-384 in
  OpenSSH format, the only format ``flower-supernode --auth-supernode-private-key`` and
  ``flwr supernode register`` accept. An operator makes it on their own machine and sends
  only the ``.pub``; the private key never leaves the platform.

From the command line::

    crossfed certs init --out DIR --platforms N [--host 127.0.0.1 --host localhost]
    crossfed certs ca --out DIR
    crossfed certs server --out DIR --host coordinator.example.org [--host 10.0.0.5]
    crossfed certs platform --out DIR --name platform-0
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crossfed.shared.storage.checked import atomic_write_bytes

logger = logging.getLogger("crossfed.certs")

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Flower verifies SuperNode signatures on NIST curves; P-384 is the one its guide uses.
AUTH_CURVE = ec.SECP384R1()


@dataclass(frozen=True)
class PlatformKeys:
    private_key: Path
    public_key: Path


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    """Atomic write; private keys readable by their owner only."""
    atomic_write_bytes(path, data)  # a private temporary file (0600), renamed into place
    if not private:
        os.chmod(path, 0o644)
    return path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "crossfed"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)


def make_ca(out: Path, days: int = 3650) -> tuple[Path, Path]:
    """A self-signed CA that may sign certificates but no further CAs."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("crossfed federation CA"))
        .issuer_name(_name("crossfed federation CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        _write(out / CA_CERT, cert.public_bytes(serialization.Encoding.PEM)),
        _write(out / CA_KEY, _pem_key(key), private=True),
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_server_cert(out: Path, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = 825) -> tuple[Path, Path]:
    """The SuperLink's certificate, signed by the CA in ``out``; one SAN per host the platforms dial."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or IP address")
    ca_cert = x509.load_pem_x509_certificate((out / CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key((out / CA_KEY).read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in dict.fromkeys(hosts)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return (
        _write(out / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM)),
        _write(out / SERVER_KEY, _pem_key(key), private=True),
    )


def make_platform_keys(out: Path, name: str) -> PlatformKeys:
    """A platform's authentication key pair, OpenSSH-encoded ECDSA P-384."""
    key = ec.generate_private_key(AUTH_CURVE)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return PlatformKeys(
        _write(out / f"{name}.key", private, private=True), _write(out / f"{name}.pub", public + f" {name}\n".encode())
    )


def platform_key_name(index: int) -> str:
    return f"platform-{index}"


def init(out: Path, platforms: int, hosts: Sequence[str] = DEFAULT_HOSTS) -> list[PlatformKeys]:
    """Everything a loopback or a first deployment needs in one folder (``platforms/`` holds the key pairs)."""
    make_ca(out)
    make_server_cert(out, hosts)
    return [make_platform_keys(out / "platforms", platform_key_name(i)) for i in range(platforms)]
