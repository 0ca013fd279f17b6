"""A consent service's folder: ``consent.key`` (0600) and its CSR, ``consent.pem`` once the
central authority has certified it, and two secrets: ``subject.key`` (hashes citizens' codes)
and ``session.key`` (signs the web pages' session cookies)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from exchange import keyfolder


def initialise(folder: Path, name: str) -> Path:
    """Make the signing key and a CSR for it; return the CSR's path."""
    return keyfolder.new_key(folder, "consent", label=name)


def secret(folder: Path, name: str) -> bytes:
    return keyfolder.secret(folder / name)


def load(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return keyfolder.ec_pair(
        folder,
        "consent",
        hint="run 'exchange consent init' and have the CSR certified with "
        "'exchange central consent-service add'",
    )
