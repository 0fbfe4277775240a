"""A self-signed certificate for serving HTTPS on a classroom network (``moodlens serve
--self-signed``): browsers give a page the camera only over HTTPS (or on localhost), and a
classroom rarely has a domain name with a real certificate. Each device's browser warns once;
the teacher can instead import the certificate on the class's devices.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from pathlib import Path

from moodlens.errors import MoodLensError


def self_signed_certificate(folder: Path, address: str | None = None, days: int = 825) -> tuple[Path, Path]:
    """``(certificate, key)`` PEM files in ``folder`` for localhost, this computer's name and
    ``address``; made again when missing, expiring within a week, or not covering ``address``."""
    cert_path, key_path = folder / "moodlens-cert.pem", folder / "moodlens-key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise MoodLensError("--self-signed needs the `cryptography` package: pip install 'moodlens[web]'") from None

    names = ["localhost", socket.gethostname()]
    addresses = [ipaddress.ip_address("127.0.0.1")] + ([ipaddress.ip_address(address)] if address else [])
    now = datetime.datetime.now(datetime.timezone.utc)
    if cert_path.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        covered = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if (cert.not_valid_after_utc - now > datetime.timedelta(days=7)
                and all(a in covered.get_values_for_type(x509.IPAddress) for a in addresses)):
            return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"MoodLens on {names[1]}")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([*(x509.DNSName(n) for n in dict.fromkeys(names)),
                                                        *(x509.IPAddress(a) for a in addresses)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    key_path.touch(mode=0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
