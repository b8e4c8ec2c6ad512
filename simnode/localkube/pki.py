"""Certificates for the local control plane.

The control plane serves TLS on 127.0.0.1 and authenticates every client by
certificate, as a kubeadm cluster does: one CA signs the serving certificate and
a client certificate per identity (the admin in ``system:masters``, the
controller-manager and the scheduler under their well-known user names). The
service-account token key pair is separate. Files are reused when present so a
cluster restarted on the same state directory keeps its identities.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

VALIDITY = dt.timedelta(days=365)
SERVICE_IP = "10.0.0.1"
SERVICE_CIDR = "10.0.0.0/24"
SERVING_DNS = (
    "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate's subject: user name and groups."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = ClientIdentity("admin", "kubernetes-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
CLIENTS = (ADMIN, CONTROLLER_MANAGER, SCHEDULER)


@dataclass(frozen=True)
class Pki:
    """Paths of every file the control plane reads."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.root / "serving.crt"

    @property
    def serving_key(self) -> Path:
        return self.root / "serving.key"

    @property
    def sa_private(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_public(self) -> Path:
        return self.root / "sa.pub"

    def client_cert(self, who: ClientIdentity) -> Path:
        return self.root / f"{who.file_stem}.crt"

    def client_key(self, who: ClientIdentity) -> Path:
        return self.root / f"{who.file_stem}.key"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(data)
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
             ) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _load_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{pki.ca_key} is not an EC key")
    return cert, key


def _make_ca(pki: Pki) -> None:
    key = _new_key()
    name = _name("dgxsim-ca")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(pki.ca_key, key)
    _write_cert(pki.ca_cert, cert)


def _sign_leaf(pki: Pki, subject: x509.Name, usage: ObjectIdentifier,
               sans: list[x509.GeneralName] | None, cert_path: Path, key_path: Path) -> None:
    ca_cert, ca_key = _load_ca(pki)
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write_key(key_path, key)
    _write_cert(cert_path, builder.sign(ca_key, hashes.SHA256()))


def ensure_pki(root: Path) -> Pki:
    """Create any missing CA, serving, client and service-account files under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    pki = Pki(root)
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        _make_ca(pki)
    if not pki.serving_cert.exists():
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in SERVING_DNS]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", SERVICE_IP)]
        _sign_leaf(pki, _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans,
                   pki.serving_cert, pki.serving_key)
    for who in CLIENTS:
        if not pki.client_cert(who).exists():
            _sign_leaf(pki, _name(who.user, who.groups), ExtendedKeyUsageOID.CLIENT_AUTH, None,
                       pki.client_cert(who), pki.client_key(who))
    if not pki.sa_private.exists():
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_key(pki.sa_private, sa_key)
        pki.sa_public.write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


def ensure_node_certs(pki: Pki, node: str, node_ip: str, directory: Path) -> tuple[Path, Path]:
    """A kubelet's two certificates, issued by the cluster CA into ``directory``: its client
    certificate (``system:node:<node>`` in ``system:nodes``, as the Node authorizer expects)
    and its serving certificate for ``node_ip``. Returns the client (cert, key) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    client = (directory / "kubelet-client.crt", directory / "kubelet-client.key")
    if not client[0].exists():
        _sign_leaf(pki, _name(f"system:node:{node}", ("system:nodes",)),
                   ExtendedKeyUsageOID.CLIENT_AUTH, None, *client)
    serving = node_serving_cert(directory)
    if not serving[0].exists():
        sans: list[x509.GeneralName] = [x509.DNSName(node),
                                        x509.IPAddress(ipaddress.ip_address(node_ip))]
        _sign_leaf(pki, _name(f"system:node:{node}", ("system:nodes",)),
                   ExtendedKeyUsageOID.SERVER_AUTH, sans, *serving)
    return client


def node_serving_cert(directory: Path) -> tuple[Path, Path]:
    """Where :func:`ensure_node_certs` puts a kubelet's serving certificate and key."""
    return directory / "kubelet.crt", directory / "kubelet.key"
