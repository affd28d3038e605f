"""HTTPS for `earshot serve`: a certificate the operator gives (tls_cert/tls_key), or a self-signed one for a LAN demo.

`--tls self-signed` makes an ECDSA P-256 certificate whose subject alternative
names are this machine's names and addresses (server/machine_names.py) and
keeps it, with its key (mode 0600), under data_dir/tls. The next start reuses
it while it is valid for at least another day and names the same hosts, so a
browser that was told to trust it once keeps trusting it. Its SHA-256
fingerprint is logged: the one thing a person on a second device compares
before accepting the browser's warning.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from earshot.server.errors import StartupError
from earshot.server.machine_names import MachineNames, is_loopback, loopback_names, machine_names
from earshot.server.settings import Settings

log = logging.getLogger(__name__)

VALID_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=1)
CERT_FILE = "self-signed-cert.pem"
KEY_FILE = "self-signed-key.pem"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def serving_tls(settings: Settings) -> Optional[TlsFiles]:
    """The certificate and key to serve with (None: plain HTTP); a self-signed one is made or reused and announced."""
    if settings.tls_cert:
        return _usable(TlsFiles(Path(settings.tls_cert), Path(settings.tls_key)))
    if settings.tls != "self-signed":
        return None
    names = machine_names()
    files = self_signed(settings.data_dir / "tls", names)
    log.info("self-signed certificate %s, SHA-256 fingerprint %s", files.cert, fingerprint(files.cert.read_bytes()))
    log.info("open %s and accept the certificate if the browser shows the same fingerprint",
             " or ".join(urls(settings.host, settings.port, names)))
    return files


def self_signed(folder: Path, names: MachineNames, now: Optional[dt.datetime] = None) -> TlsFiles:
    """The certificate for `names` under `folder`: the one already there if still good, else a new one."""
    now = now or dt.datetime.now(dt.timezone.utc)
    files = TlsFiles(folder / CERT_FILE, folder / KEY_FILE)
    if _reusable(files, names, now):
        return files
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names.names[-1]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Earshot (self-signed)")])
    sans = [x509.DNSName(n) for n in names.names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in names.addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    _write_private(files.key, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.info("made a self-signed certificate for %s", ", ".join(names.all))
    return files


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the certificate, as browsers show it: colon-separated upper-case hex."""
    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def spki_sha256(cert_pem: bytes) -> str:
    """Base64 SHA-256 of the certificate's public key: what Chromium's --ignore-certificate-errors-spki-list takes."""
    spki = x509.load_pem_x509_certificate(cert_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def certificate_names(cert_pem: bytes) -> set[str]:
    """The DNS names and IP addresses a certificate is for."""
    sans = x509.load_pem_x509_certificate(cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(sans.value.get_values_for_type(x509.DNSName)) | {
        str(a) for a in sans.value.get_values_for_type(x509.IPAddress)}


def urls(host: str, port: int, names: MachineNames) -> list[str]:
    """The https URLs that reach a server bound to `host`: loopback, one address, or (wildcard) every name."""
    if is_loopback(host):
        hosts = list(loopback_names().names)
    elif host in ("0.0.0.0", "::", ""):
        hosts = [h for h in names.all if not is_loopback(h)] or list(names.names)
    else:
        hosts = [host]
    return [f"https://{f'[{h}]' if ':' in h else h}:{port}/" for h in hosts]


def _usable(files: TlsFiles) -> TlsFiles:
    """`files` if Python's TLS can serve with them; else a StartupError now rather than a traceback later."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(files.cert, files.key)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot serve HTTPS with certificate {files.cert} and key {files.key}: {exc}") from None
    return files


def _reusable(files: TlsFiles, names: MachineNames, now: dt.datetime) -> bool:
    if not (files.cert.is_file() and files.key.is_file()):
        return False
    try:
        cert_pem = files.cert.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        same_key = _public_der(key.public_key()) == _public_der(cert.public_key())
        covers = certificate_names(cert_pem) == set(names.all)
    except (ValueError, TypeError, x509.ExtensionNotFound):
        return False
    valid = cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc
    return same_key and covers and valid


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` readable by this user only (0600), also when the file was there before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
