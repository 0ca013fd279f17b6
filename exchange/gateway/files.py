"""A gateway's data folder: its member's signing key, its TLS key, their certificates.

::

    <data_dir>/
      signing.key  signing.csr  signing.pem    the member's message-signing key (0600)
      tls.key      tls.csr      tls.pem        this gateway's TLS key (0600)
      ca.pem                                   the instance CA, from the global configuration
      globalconf.jws                           the last verified global configuration
      gateway.db                               replay guard, access rights, exchanges (SQLite)

Keys are generated here and never leave; only the CSRs go to the central authority, either by
``exchange gateway enrol`` (management API) or carried by hand to ``exchange central cert``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from exchange import keyfolder
from exchange.errors import NotFound, ServiceFailed
from exchange.faults import mapped
from exchange.gateway.settings import GatewaySettings


@dataclass(frozen=True)
class GatewayKeys:
    signing_key: ec.EllipticCurvePrivateKey
    signing_certificate: x509.Certificate
    tls_key_path: Path
    tls_certificate_path: Path


def initialise(settings: GatewaySettings) -> list[Path]:
    """Generate both key pairs and their CSRs (once); return the CSR paths."""
    root = keyfolder.create(settings.data_dir)
    made = [
        keyfolder.new_key(root, name, label=label)
        for name, label in (("signing", str(settings.gateway.member)), ("tls", settings.id))
        if not (root / f"{name}.key").exists()
    ]
    audit_key(settings)
    return made


def enrol(
    settings: GatewaySettings,
    *,
    central_url: str,
    token: str,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Send both CSRs to the central authority's management API and store the certificates."""
    root = settings.data_dir
    requests = (
        ("signing", "/api/v1/certificates/signing", str(settings.gateway.member)),
        ("tls", "/api/v1/certificates/tls", settings.id),
    )
    with httpx.Client(
        base_url=central_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        transport=transport,
    ) as client:
        for name, path, owner in requests:
            csr = root / f"{name}.csr"
            if not csr.exists():
                raise NotFound(f"{csr} is missing; run 'exchange gateway init' first")
            with mapped("the central authority"):
                response = client.post(path, json={"owner": owner, "csr": csr.read_text()})
            if response.status_code != 201:
                try:
                    message = response.json()["message"]
                except (ValueError, KeyError):
                    message = f"HTTP {response.status_code}"
                raise ServiceFailed(f"central authority refused the {name} CSR: {message}")
            (root / f"{name}.pem").write_text(response.json()["certificate"])


def audit_key(settings: GatewaySettings) -> bytes:
    """The secret that hashes persons' ids in the audit log; replicas of a gateway share it."""
    return keyfolder.secret(settings.data_dir / "audit.key")


def load(settings: GatewaySettings) -> GatewayKeys:
    root, hint = settings.data_dir, "run 'exchange gateway init' and 'enrol' first"
    key, certificate = keyfolder.ec_pair(root, "signing", hint=hint)
    keyfolder.require(root, ("tls.key", "tls.pem"), hint=hint)
    return GatewayKeys(
        signing_key=key,
        signing_certificate=certificate,
        tls_key_path=root / "tls.key",
        tls_certificate_path=root / "tls.pem",
    )


def session_key(settings: GatewaySettings) -> bytes:
    """Signs the preview pages' session cookies; replicas behind one address share it."""
    return keyfolder.secret(settings.data_dir / "session.key")


def console_session_key(settings: GatewaySettings) -> bytes:
    """Signs the console's session cookies (apart from the preview pages': another audience)."""
    return keyfolder.secret(settings.data_dir / "console-session.key")
