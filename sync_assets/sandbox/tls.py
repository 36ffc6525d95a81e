"""The sandbox's TLS material: a CA and a server certificate in the data dir, made once and reused."""

import os
import ssl
from pathlib import Path

import trustme

CA_FILE = "ca.pem"
SERVER_FILE = "server.pem"


def ensure_certificates(data_dir: Path) -> tuple[Path, Path]:
    """(CA certificate, server key + chain), created on first start for 127.0.0.1 and localhost."""
    ca_path, server_path = data_dir / CA_FILE, data_dir / SERVER_FILE
    if ca_path.exists() and server_path.exists():
        return ca_path, server_path
    ca = trustme.CA(organization_name="sync_assets local Salesforce sandbox")
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    partial = server_path.with_suffix(".part")
    partial.write_bytes(server.private_key_and_cert_chain_pem.bytes())
    os.chmod(partial, 0o600)
    ca_partial = ca_path.with_suffix(".part")
    ca_partial.write_bytes(ca.cert_pem.bytes())
    os.replace(partial, server_path)
    os.replace(ca_partial, ca_path)
    return ca_path, server_path


def server_context(server_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(server_path)
    return context
