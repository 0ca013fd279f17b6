"""A gateway's keys and certificates, made and enrolled without a shell (the console's
certificates page) or from the command line (``exchange gateway init`` and ``enrol --code``).

1. :func:`generate`: the signing and TLS key pairs and their CSRs, once (keys are never
   replaced here: a key in use stays until an operator removes it by hand);
2. :func:`enrol`: both CSRs go to the central authority with the one-time enrolment code its
   operator issued for this gateway (``POST /enrolment``, :mod:`exchange.central.enrolment`);
   the certificates that come back are checked against this gateway's own keys and the
   instance CA of the trust anchor before they are installed. Keys never leave the data folder.

A refusal of the authority is raised as the same error (type, status and message), so the
console and the command line show "the code has expired" as the authority said it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography import x509

from exchange import errors
from exchange.errors import Error, InvalidResponse, NotFound, ServiceFailed
from exchange.faults import mapped
from exchange.gateway import files
from exchange.gateway.settings import GatewaySettings
from exchange.trust.globalconf import TrustAnchor
from exchange.trust.keys import load_private_key, serial_hex

NAMES = ("signing", "tls")
HINT = "generate the keys first (the console's certificates page, or 'exchange gateway init')"


@dataclass(frozen=True, slots=True)
class State:
    """What the data folder holds, per key: ``signing`` and ``tls``."""

    keys: frozenset[str]
    requests: frozenset[str]
    certificates: frozenset[str]

    @property
    def enrolled(self) -> bool:
        return self.certificates >= set(NAMES) and self.keys >= set(NAMES)


@dataclass(frozen=True, slots=True)
class Installed:
    name: str  # signing | tls
    serial: str
    not_after: datetime


def state(settings: GatewaySettings) -> State:
    root = settings.data_dir

    def having(suffix: str) -> frozenset[str]:
        return frozenset(n for n in NAMES if (root / f"{n}.{suffix}").exists())

    return State(keys=having("key"), requests=having("csr"), certificates=having("pem"))


def generate(settings: GatewaySettings) -> list[Path]:
    """Both key pairs and their CSRs, where absent; the CSRs written."""
    return files.initialise(settings)


def request(settings: GatewaySettings, name: str) -> str:
    """The CSR ``name`` (``signing`` or ``tls``), PEM."""
    if name not in NAMES:
        raise NotFound(f"no certificate request {name!r}", detail=name)
    path = settings.data_dir / f"{name}.csr"
    if not path.exists():
        raise NotFound(f"there is no {name} certificate request yet; {HINT}", detail=name)
    return path.read_text()


def central_url(settings: GatewaySettings) -> str:
    """The central authority's URL, from the trust anchor (where its configuration is)."""
    return TrustAnchor.load(settings.anchor).configuration_url.removesuffix("/globalconf")


def enrol(
    settings: GatewaySettings,
    code: str,
    *,
    central: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Installed]:
    """Send both CSRs with ``code`` to the authority; install the certificates it issues."""
    body = {
        "code": code.strip(),
        "gateway": settings.id,
        "signing_csr": request(settings, "signing"),
        "tls_csr": request(settings, "tls"),
    }
    url = central or central_url(settings)
    with httpx.Client(timeout=30, transport=transport) as client, mapped("the central authority"):
        answer = client.post(f"{url}/enrolment", json=body)
    if answer.status_code != 201:
        raise refusal(answer)
    try:
        issued = {name: answer.json()[name]["certificate"] for name in NAMES}
        certificates = {n: x509.load_pem_x509_certificate(p.encode()) for n, p in issued.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidResponse("the central authority's answer holds no certificates") from exc
    anchor = TrustAnchor.load(settings.anchor)
    for name, certificate in certificates.items():
        _check(settings.data_dir, name, certificate, anchor)
    installed = []
    for name, pem in issued.items():
        _replace(settings.data_dir / f"{name}.pem", pem)
        certificate = certificates[name]
        installed.append(
            Installed(name, serial_hex(certificate.serial_number), certificate.not_valid_after_utc)
        )
    return installed


def refusal(answer: httpx.Response) -> Error:
    """The authority's refusal as the error it names (``Client.EnrolmentCodeExpired``...),
    else as a failed service."""
    try:
        body = answer.json()
        kind, message = str(body["type"]), str(body["message"])
        detail = body.get("detail")
    except (ValueError, KeyError, TypeError):
        return ServiceFailed(f"the central authority answered HTTP {answer.status_code}")
    named = _error_class(kind.partition(".")[2])
    if named is None or named.status != answer.status_code:
        return ServiceFailed(f"the central authority refused: {message}")
    return named(message, detail=detail if isinstance(detail, str) else None)


def _error_class(code: str) -> type[Error] | None:
    pending: list[type[Error]] = [errors.Error]
    while pending:
        kind = pending.pop()
        if kind.code == code:
            return kind
        pending.extend(kind.__subclasses__())
    return None


def _check(root: Path, name: str, certificate: x509.Certificate, anchor: TrustAnchor) -> None:
    """The certificate is for this gateway's own key, and names the instance's CA as issuer
    (the CA's signature is verified with the global configuration, which lists the
    certificates; the certificates page shows one that is not listed)."""
    key = load_private_key(root / f"{name}.key")
    if certificate.public_key() != key.public_key():
        raise InvalidResponse(f"the {name} certificate is not for this gateway's {name} key")
    issuers = {c.issuer for c in anchor.certificates().values()}
    if certificate.issuer not in issuers:
        raise InvalidResponse(f"the {name} certificate is not issued by this instance's CA")


def _replace(path: Path, pem: str) -> None:
    """Write ``pem`` whole into ``path`` (a reader never sees half a certificate)."""
    written = path.with_name(f".{path.name}.{os.getpid()}")
    written.write_text(pem)
    written.replace(path)
