"""The consent artefact: what a citizen agreed to, signed by the consent service.

Wire form: a compact JWS (RFC 7515), ``typ`` ``exchange-consent+jwt``, ES256, ``kid`` = SHA-256
fingerprint of the consent service's signing certificate (issued by the instance CA with the
documentSigning usage and listed in the global configuration under ``consent_services``).

The claims are those of :class:`Consent`. Their names follow JWT where JWT has one (``iss``,
``sub``, ``jti``, ``iat``, ``nbf``, ``exp``) and otherwise the consent receipt standards
(ISO/IEC TS 27560, Kantara Consent Receipt) where they apply: the PII principal is ``sub``, the
receipt id ``jti``, the controller the consumer, one purpose with its code, text and legal
basis, ``consent_type`` explicit, ``collection_method``, ``language``, ``jurisdiction``, and how
the consent ends (``termination``: revocable any time, at the latest ``exp``).

:func:`verify` checks the signature and the signer (through
:func:`~exchange.trust.signed.verify_signed`); it does not check whether the consent fits a
request (:meth:`Consent.check` does) or whether it is still live (the consent service's status).
:class:`Remembered` does the same for a provider that sees one artefact again and again.
"""

from __future__ import annotations

import base64
import functools
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from exchange.errors import ConsentDenied, InvalidSignature
from exchange.trust.signed import Signer, verify_signed
from exchange.trust.view import TrustView

JWS_TYPE = "exchange-consent+jwt"
SCHEMA = "exchange-consent/1"
MAX_ARTEFACT_BYTES = 8 * 1024
KEPT_ARTEFACT_CHARS = 4096  # an artefact is ~1.3 KB; up to 1,024 of these are read once


@dataclass(frozen=True, slots=True)
class Purpose:
    code: str
    text: str
    legal_basis: str | None = None


@dataclass(frozen=True, slots=True)
class Consent:
    jti: str  # the consent's id
    iss: str  # the consent service's name in the global configuration
    sub: str  # the citizen (PII principal): national identity code
    consumer: str  # the client subsystem allowed to ask (the PII controller's system)
    consumer_name: str  # the controller's registered name, as shown to the citizen
    service: str  # INSTANCE/CLASS/MEMBER/SUBSYSTEM/SERVICE, without version
    evidence_type: str
    purpose: Purpose
    iat: int  # when the citizen confirmed
    nbf: int  # valid from
    exp: int  # valid until
    max_uses: int | None
    preview: bool  # the citizen wants to see the evidence before each release
    notice: str  # the plain words the citizen confirmed
    status_url: str  # where relying parties learn whether it is still live
    language: str = "en"
    jurisdiction: str = ""
    consent_type: str = "explicit"
    collection_method: str = "web form, citizen signed in with an OIDC ID token"
    termination: str = "revocable by the citizen at any time; ends at exp"
    schema: str = SCHEMA

    def claims(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Consent:
        try:
            purpose = Purpose(**claims["purpose"])
            fields = {k: v for k, v in claims.items() if k != "purpose"}
            consent = cls(purpose=purpose, **fields)
        except (KeyError, TypeError) as exc:
            raise ConsentDenied("consent artefact has missing or unexpected fields") from exc
        _check_types(consent)
        return consent

    def check(
        self,
        *,
        at: datetime,
        consumer: str,
        service: str,
        evidence_type: str,
        purpose: str | None,
        subject: str | None,
        user_id: str | None,
    ) -> None:
        """Raise :class:`ConsentDenied` (``detail`` names the reason) unless this consent
        covers the request described."""
        now = at.timestamp()
        if now < self.nbf:
            raise ConsentDenied("consent is not valid yet", detail="not-yet-valid")
        if now >= self.exp:
            raise ConsentDenied("consent has expired", detail="expired")
        if consumer != self.consumer:
            raise ConsentDenied("consent was given to another consumer", detail="other-consumer")
        if service != self.service or evidence_type != self.evidence_type:
            raise ConsentDenied("consent is for another service", detail="other-service")
        if purpose != self.purpose.code:
            raise ConsentDenied("consent is for another purpose", detail="other-purpose")
        if subject is None or subject != self.sub or user_id != self.sub:
            raise ConsentDenied(
                "consent was given by another person than the one queried or the user",
                detail="other-person",
            )


def _check_types(consent: Consent) -> None:
    texts = ("jti", "iss", "sub", "consumer", "consumer_name", "service", "evidence_type")
    if not all(isinstance(getattr(consent, name), str) for name in texts):
        raise ConsentDenied("consent artefact field is not text")
    for name in ("iat", "nbf", "exp"):
        value = getattr(consent, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConsentDenied(f"consent artefact field {name} is not an integer")
    uses = consent.max_uses
    if uses is not None and (not isinstance(uses, int) or isinstance(uses, bool) or uses < 1):
        raise ConsentDenied("consent artefact field max_uses is not a positive integer")
    if not isinstance(consent.preview, bool) or not isinstance(consent.purpose.code, str):
        raise ConsentDenied("consent artefact has a field of the wrong type")


def sign(signer: Signer, consent: Consent) -> str:
    """The artefact of ``consent``, signed by the consent service's ``signer``."""
    return signer.sign(consent.claims(), JWS_TYPE)


def reference(value: str | None) -> str | None:
    """What records keep of an ``X-Exchange-Consent`` value: the consent id, never the artefact
    (which names the person). Unverified here; it is a label, checked where it matters."""
    if value is None or value.count(".") != 2:
        return value
    if len(value) > KEPT_ARTEFACT_CHARS:  # read, not kept: the memory kept stays small
        return _consent_id.__wrapped__(value)
    return _consent_id(value)


@functools.lru_cache(maxsize=1024)
def _consent_id(value: str) -> str:
    # Kept by the artefact's exact text (a lasting consent's artefact comes again and again
    # from the same caller): up to 1,024 artefacts, each naming its person, stay in this
    # process's memory beside their ids.
    payload = value.split(".")[1]
    try:
        # Read on every exchange of the consumer: orjson and one base64 call (a third of the
        # cost of PyJWT's helper and the standard json module).
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        jti = claims.get("jti") if isinstance(claims, dict) else None
    except (ValueError, TypeError):  # binascii.Error and orjson's error are ValueErrors
        jti = None
    return jti[:255] if isinstance(jti, str) else "unreadable-artefact"


def verify(token: str, *, view: TrustView, at: datetime) -> Consent:
    """The consent in ``token`` if its signature verifies with the certificate of a consent
    service that ``view`` lists, unrevoked and valid at ``at``, and that names itself ``iss``."""
    return _verified(token, view=view, at=at)[0]


class Remembered:
    """:func:`verify` for a provider, which sees the same artefact on request after request:
    the signature of an artefact (its exact text) is checked once per trust view. The signer's
    certificate is still checked at every use, by the view as for a signature checked now
    (listed, not revoked, valid, its OCSP status where the gateway asks), and a new view forgets
    all; whether the consent fits the request and is live is never remembered (the caller
    checks).
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._view: TrustView | None = None
        self._known: OrderedDict[str, tuple[Consent, str]] = OrderedDict()  # and its signer
        self._lock = threading.Lock()  # providers verify on worker threads too

    def verify(self, token: str, *, view: TrustView, at: datetime) -> Consent:
        with self._lock:
            if view is not self._view:  # other signers, other revocations: start again
                self._view = view
                self._known.clear()
            known = self._known.get(token)
            if known is not None:
                self._known.move_to_end(token)
        if known is None:
            consent, kid = _verified(token, view=view, at=at)
            with self._lock:
                if view is self._view:
                    self._known[token] = consent, kid
                    if len(self._known) > self._size:
                        self._known.popitem(last=False)
            return consent
        consent, kid = known
        try:
            view.consent_signer(at=at)(kid)
        except InvalidSignature as exc:
            raise ConsentDenied(
                f"consent artefact refused: {exc.message}", detail="invalid-artefact"
            ) from exc
        return consent


def _verified(token: str, *, view: TrustView, at: datetime) -> tuple[Consent, str]:
    """The consent and the key id of the consent service that signed it."""
    if len(token) > MAX_ARTEFACT_BYTES:
        raise ConsentDenied("consent artefact is too large", detail="invalid-artefact")
    try:
        verified = verify_signed(token, typ=JWS_TYPE, certificate_for=view.consent_signer(at=at))
    except InvalidSignature as exc:
        raise ConsentDenied(
            f"consent artefact refused: {exc.message}", detail="invalid-artefact"
        ) from exc
    consent = Consent.from_claims(verified.claims)
    if consent.iss != view.consent_authorities[verified.kid].name:
        raise ConsentDenied(
            "consent artefact names another consent service", detail="invalid-artefact"
        )
    return consent, verified.kid


def timestamp(value: datetime) -> int:
    return int(value.astimezone(UTC).timestamp())
