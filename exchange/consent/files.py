"""A consent service's folder: ``consent.key`` (0600) and its CSR, ``consent.pem`` once the
central authority has certified it, and two secrets: ``subject.key`` (hashes citizens' codes)
and ``session.key`` (signs the web pages' session cookies)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from exchange.errors import NotFound
from exchange.trust.keys import (
    build_csr,
    csr_pem,
    generate_key,
    load_certificate,
    load_private_key,
    secret_file,
    write_private_key,
)


def initialise(folder: Path, name: str) -> Path:
    """Make the signing key and a CSR for it; return the CSR's path."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_key()
    write_private_key(folder / "consent.key", key)
    csr = folder / "consent.csr"
    csr.write_text(csr_pem(build_csr(key, name)))
    return csr


def secret(folder: Path, name: str) -> bytes:
    return secret_file(folder / name)


def load(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    for name in ("consent.key", "consent.pem"):
        if not (folder / name).exists():
            raise NotFound(
                f"{folder / name} is missing; run 'exchange consent init' and have the CSR "
                "certified with 'exchange central consent-service add'"
            )
    key = load_private_key(folder / "consent.key")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the consent service's key must be EC P-256")
    return key, load_certificate(folder / "consent.pem")
