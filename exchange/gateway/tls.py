"""Mutual TLS for the provider side, with the peer's certificate handed to the app.

uvicorn enforces a client certificate from the instance CA at the handshake but does not tell
the app which certificate was presented. :class:`PeerCertificateProtocol` does: it reads the peer
certificate once per connection and puts its SHA-256 fingerprint into every request's scope
(and, per the ASGI TLS extension, the PEM chain). The provider then binds that TLS identity to a
registered gateway of the calling member; revocation is honoured because the global
configuration lists only live TLS certificates.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

from exchange.serving import HttpProtocol
from exchange.trust.keys import fingerprint_der

PEER_FINGERPRINT = "exchange.peer_certificate_sha256"


class PeerCertificateProtocol(HttpProtocol):
    _peer_fingerprint: str | None = None
    _peer_pem: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self._peer_fingerprint = fingerprint_der(der)
            self._peer_pem = ssl.DER_cert_to_PEM_cert(der)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        scope: Any = self.scope
        scope[PEER_FINGERPRINT] = self._peer_fingerprint
        scope["extensions"] = {
            "tls": {"client_cert_chain": [self._peer_pem] if self._peer_pem else []}
        }


def server_ssl_options(*, certificate: Path, key: Path, ca: Path) -> dict[str, Any]:
    """uvicorn options for a listener that requires a client certificate from the instance CA."""
    return {
        "ssl_certfile": str(certificate),
        "ssl_keyfile": str(key),
        "ssl_ca_certs": str(ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
