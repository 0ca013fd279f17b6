"""The instance CRL inside TLS contexts: a revoked certificate fails the handshake.

The global configuration lists only live certificates but carries no CRL; the authority
publishes the CRL at ``<central_url>/crl`` (DER, signed by the instance CA). A
:class:`RevocationList` fetches it, verifies it against the CA of the current configuration
(:func:`verify_crl`), keeps it in a PEM file, and loads it into every TLS context it protects
(:meth:`RevocationList.protect`), which also sets ``VERIFY_CRL_CHECK_LEAF``.

Python's ``load_verify_locations(cadata=...)`` accepts certificates only: a CRL loads through
``cafile``, from a file of its own per load (the file kept in the data folder, for a restart
without the authority, is shared by a gateway's workers).

Why it works on a listener that is already serving: OpenSSL adds the newer CRL to the context's
store beside the older one, and for each handshake picks the valid CRL with the latest
``thisUpdate``; a context is never rebuilt, so uvicorn's listener keeps running. The authority
gives each CRL a later ``thisUpdate`` (to the second) than the one before it, so that the newer
one wins.

Fails closed by OpenSSL's own rules: a context with the flag and no CRL refuses every
handshake ("unable to get certificate CRL"), and so does one whose newest CRL has passed its
``nextUpdate`` ("CRL has expired"). What is *not* checked here: the status of signing
certificates (:mod:`exchange.trust.ocsp` does that).
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from exchange.errors import CertificateStatusUnknown

log = structlog.get_logger(__name__)

Fetch = Callable[[str], bytes]
DEFAULT_SKEW = timedelta(minutes=2)


def verify_crl(
    der: bytes, *, ca: x509.Certificate, at: datetime, skew: timedelta = DEFAULT_SKEW
) -> x509.CertificateRevocationList:
    """``der`` as a CRL of ``ca``, current at ``at``; else :class:`CertificateStatusUnknown`."""
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError as exc:
        raise CertificateStatusUnknown("the revocation list cannot be read") from exc
    if crl.issuer != ca.subject:
        raise CertificateStatusUnknown("the revocation list was issued by another authority")
    public_key = ca.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) or not (
        crl.is_signature_valid(public_key)
    ):
        raise CertificateStatusUnknown("the revocation list signature does not verify")
    next_update = crl.next_update_utc
    if crl.last_update_utc > at + skew:
        raise CertificateStatusUnknown("the revocation list was issued in the future")
    if next_update is None or next_update <= at:
        raise CertificateStatusUnknown("the revocation list is stale (past its nextUpdate)")
    return crl


def _number(crl: x509.CertificateRevocationList) -> int:
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


class RevocationList:
    """The instance CRL for this process's TLS contexts, refreshed with the configuration."""

    def __init__(self, *, path: Path, fetch: Fetch, clock: Callable[[], datetime]) -> None:
        self._path = path
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._contexts: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()
        self.crl: x509.CertificateRevocationList | None = None

    def protect(self, context: ssl.SSLContext) -> ssl.SSLContext:
        """Check the peer's certificate against the CRL at every handshake of ``context``,
        now and after every refresh."""
        if context in self._contexts:
            return context
        with self._lock:
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
            if self.crl is not None:
                _load(context, self.crl)
            self._contexts.add(context)
        return context

    def current(self, at: datetime) -> bool:
        """Whether a CRL is held and not past its nextUpdate (else handshakes fail)."""
        held = self.crl
        return held is not None and (held.next_update_utc or at) > at

    def load_cached(self, ca: x509.Certificate) -> bool:
        """Use the CRL kept on disk if it still verifies (a restart without the authority)."""
        try:
            held = x509.load_pem_x509_crl(self._path.read_bytes())
            der = held.public_bytes(serialization.Encoding.DER)
            self._install(verify_crl(der, ca=ca, at=self._clock()), write=False)
        except (OSError, ValueError, CertificateStatusUnknown) as exc:
            log.info("crl.cache_not_used", reason=str(exc))
            return False
        return True

    def refresh(self, *, url: str, ca: x509.Certificate) -> x509.CertificateRevocationList:
        """Fetch and verify the CRL at ``url``; load it into every protected context if newer."""
        try:
            der = self._fetch(url)
        except Exception as exc:  # any failure of the fetch: the held CRL stays until it expires
            raise CertificateStatusUnknown("the revocation list cannot be fetched") from exc
        crl = verify_crl(der, ca=ca, at=self._clock())
        held = self.crl
        if held is None or _number(crl) > _number(held):
            self._install(crl, write=True)
            log.info("crl.loaded", number=_number(crl), revoked=len(crl))
        return crl

    def _install(self, crl: x509.CertificateRevocationList, *, write: bool) -> None:
        with self._lock:
            self.crl = crl
            for context in list(self._contexts):
                _load(context, crl)
        if write:
            try:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
                temporary.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
                temporary.replace(self._path)
            except OSError as exc:
                log.warning("crl.cache_not_written", cause=type(exc).__name__)


def _load(context: ssl.SSLContext, crl: x509.CertificateRevocationList) -> None:
    with tempfile.NamedTemporaryFile(suffix=".pem") as handle:
        handle.write(crl.public_bytes(serialization.Encoding.PEM))
        handle.flush()
        context.load_verify_locations(cafile=handle.name)
