"""The generated certificates carry the identities the control plane authorizes."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from localkube import pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_clients_and_server_are_signed_by_one_ca(tmp_path: Path) -> None:
    files = pki.ensure_pki(tmp_path)
    ca = _load(files.ca_cert)
    for path in [files.serving_cert, *(files.client_cert(w) for w in pki.CLIENTS)]:
        cert = _load(path)
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)


def test_admin_is_in_system_masters(tmp_path: Path) -> None:
    files = pki.ensure_pki(tmp_path)
    admin = _load(files.client_cert(pki.ADMIN))
    assert [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] \
        == ["system:masters"]
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage


def test_serving_certificate_covers_loopback_and_the_service_ip(tmp_path: Path) -> None:
    files = pki.ensure_pki(tmp_path)
    sans = _load(files.serving_cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    ips = sans.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address(pki.SERVICE_IP) in ips
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)


def test_existing_files_are_kept(tmp_path: Path) -> None:
    files = pki.ensure_pki(tmp_path)
    before = files.ca_cert.read_bytes(), files.sa_private.read_bytes()
    pki.ensure_pki(tmp_path)
    assert (files.ca_cert.read_bytes(), files.sa_private.read_bytes()) == before
    assert oct(files.ca_key.stat().st_mode & 0o777) == "0o600"
