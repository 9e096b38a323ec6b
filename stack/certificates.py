"""The cluster's certificates: who may talk to the Temporal frontend, and how its nodes know each other.

The frontend requires a client certificate (mutual TLS), so reaching port 7233 is not enough to read or
start cases: a process must hold a key the deployment issued. Two authorities keep the roles apart:

* the *cluster CA* signs the frontend's server certificate and one client certificate per product
  service (workers, api, console, ...), so a leaked console key can be revoked without touching the rest;
* the *internode CA* signs the one certificate history, matching, frontend and the internal worker
  present to each other, so a product client certificate is never accepted by history or matching.

Everything is generated locally with `cryptography` (EC P-256), once, into the state folder; private
keys are written 0600 and never logged. A deployment with its own PKI puts its files in the same places.
The compose deployment's set: `python -m stack.certificates deploy/secrets/temporal-certs` (deploy/README.md).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The frontend is reached as 127.0.0.1 or localhost here and as `temporal-frontend` inside the compose network.
SERVER_NAMES = ("localhost", "temporal-frontend")
SERVER_IPS = ("127.0.0.1",)
# The server name every client checks the frontend's certificate against (envconfig's `server_name`).
FRONTEND_SERVER_NAME = "localhost"
INTERNODE_SERVER_NAME = "internode.temporal"
# One client certificate each: the product's services (`setup` is the compose deployment's `enroll setup` job),
# a person at a terminal, the read-only UI, and the tests. (Temporal's own internal worker reaches the internal
# frontend with the internode certificate.)
CLIENTS = ("workers", "api", "console", "codec-server", "setup", "operator", "ui", "tests")
CA_DAYS = 3650
LEAF_DAYS = 825


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterCertificates:
    """Paths of every PEM file the cluster and its clients use."""

    folder: Path
    ca: Path
    frontend: KeyPair
    internode_ca: Path
    internode: KeyPair
    clients: dict[str, KeyPair] = field(default_factory=dict)

    def client(self, name: str) -> KeyPair:
        if name not in self.clients:
            raise KeyError(f"no client certificate {name!r}; there are: {', '.join(sorted(self.clients))}")
        return self.clients[name]

    def files(self) -> list[Path]:
        """Every certificate and key of the set (not the CA keys, which only sign new ones)."""
        files = [self.ca, self.internode_ca, self.frontend.cert, self.frontend.key]
        files += [self.internode.cert, self.internode.key]
        return files + [path for pair in self.clients.values() for path in (pair.cert, pair.key)]


def write_private(path: Path, data: bytes) -> None:
    """Write a key or password readable by its owner only, from the first byte (no window at 0644)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _save(pair: KeyPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(pair.key, pem_key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "enrollment"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _authority(pair: KeyPair, common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    cert = (
        _builder(common_name, _name(common_name), key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _save(pair, cert, key)
    return cert, key


def _leaf(
    pair: KeyPair,
    common_name: str,
    authority: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usages: Iterable[x509.ObjectIdentifier],
    dns_names: Iterable[str] = (),
    ips: Iterable[str] = (),
) -> None:
    ca_cert, ca_key = authority
    key = _new_key()
    builder = (
        _builder(common_name, ca_cert.subject, key.public_key(), LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    alternative: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alternative += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if alternative:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative), critical=False)
    _save(pair, builder.sign(ca_key, hashes.SHA256()), key)


def layout(folder: Path, clients: Iterable[str] = CLIENTS) -> ClusterCertificates:
    """Where every file of a set lives in `folder` (nothing is read or written)."""

    def pair(name: str) -> KeyPair:
        return KeyPair(folder / f"{name}.pem", folder / f"{name}.key")

    return ClusterCertificates(
        folder=folder,
        ca=folder / "ca.pem",
        frontend=pair("frontend"),
        internode_ca=folder / "internode-ca.pem",
        internode=pair("internode"),
        clients={name: pair(f"client-{name}") for name in clients},
    )


def ensure_certificates(folder: Path, clients: Iterable[str] = CLIENTS) -> ClusterCertificates:
    """The certificates in `folder`, generated there first if any file is missing.

    Generating all at once keeps them consistent: a new CA always comes with new certificates.
    """
    paths = layout(folder, clients)
    if all(path.is_file() for path in paths.files()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    server_auth, client_auth = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    cluster_ca = _authority(KeyPair(paths.ca, folder / "ca.key"), "enrollment Temporal cluster CA")
    _leaf(paths.frontend, "temporal frontend", cluster_ca, [server_auth], SERVER_NAMES, SERVER_IPS)
    for name, pair in paths.clients.items():
        _leaf(pair, f"enrollment {name}", cluster_ca, [client_auth])
    internode_ca = _authority(KeyPair(paths.internode_ca, folder / "internode-ca.key"), "Temporal internode CA")
    # Each node is a server to the others and their client, with the same certificate.
    names = (INTERNODE_SERVER_NAME, *SERVER_NAMES)
    _leaf(paths.internode, INTERNODE_SERVER_NAME, internode_ca, [server_auth, client_auth], names, SERVER_IPS)
    return paths


def main(argv: list[str] | None = None) -> int:
    """`python -m stack.certificates FOLDER`: a deployment's set (docker-compose.yml mounts its files from
    deploy/secrets/temporal-certs), generated once; a complete set already there is kept as it is."""
    parser = argparse.ArgumentParser(
        prog="python -m stack.certificates",
        description="Generate the Temporal cluster's CAs, server and client certificates into FOLDER, once.",
    )
    parser.add_argument("folder", type=Path, help="where to write them (made 0700; keys 0600)")
    args = parser.parse_args(argv)
    kept = all(path.is_file() for path in layout(args.folder).files())
    made = ensure_certificates(args.folder)
    print(f"{'kept the' if kept else 'wrote'} {len(made.files())} files in {made.folder}:")
    for path in made.files():
        print(f"  {path.name}")
    if not kept:
        print("ca.key and internode-ca.key sign new certificates: keep them offline, never on the hosts.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
