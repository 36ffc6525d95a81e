"""Org files for the sandbox tests: the acme example plus a connected app to sign JWTs for."""

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

ACME = Path(__file__).parent / "orgs" / "acme.yaml"
CERTIFICATE_FILE = "connected-app.crt"


@dataclass(frozen=True)
class OrgFile:
    path: Path
    document: dict[str, Any]
    signing_key: bytes  # PEM private key whose certificate the connected app holds


def key_and_certificate() -> tuple[bytes, bytes]:
    """A new RSA key (PEM) and a self-signed certificate for it (PEM), as one makes for JWT."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sync-assets connected app")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return private, certificate.public_bytes(serialization.Encoding.PEM)


def acme_org_file(directory: Path) -> OrgFile:
    """The acme example with a connected app certificate (in a file beside it), an inactive
    currency, a read-only field and a second validation rule (shown on no field)."""
    document = yaml.safe_load(ACME.read_text())
    document["currencies"]["inactive"] = ["CAD"]
    document["users"]["integration"]["read_only_fields"] = ["LeadSource"]
    document["opportunity"]["validation_rules"].append(
        {
            "name": "Won_Needs_Amount",
            "when": "IsWon = true AND Amount = null",
            "message": "A won opportunity needs an amount",
        }
    )
    document["connected_app"] = {"certificate_file": CERTIFICATE_FILE}
    private, certificate = key_and_certificate()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CERTIFICATE_FILE).write_bytes(certificate)
    path = directory / "acme.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return OrgFile(path, document, private)
