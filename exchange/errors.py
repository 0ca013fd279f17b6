"""The one exception tree of the project.

Every failure that can reach a caller is an :class:`Error`. Each class carries one HTTP status and
one error code; the HTTP layer turns it into an X-Road style body ``{"type", "message", "detail"}``
where ``type`` is ``Client.<code>`` for the caller's faults (4xx) and ``Server.<code>`` for ours
(5xx). A gateway adds its side (``Server.ClientProxy.`` / ``Server.ServerProxy.``) at the boundary.

::

    Error (500 InternalError)
    ├── LoggingFailed (503): the audit record could not be committed; nothing was released
    │                        (this gateway cannot answer now: try another replica)
    ├── InvalidRequest (400)
    │   ├── InvalidIdentifier (400)
    │   ├── InvalidCertificateRequest (400)
    │   ├── InvalidXml (400): malformed, oversized or dangerous XML (entities, DTDs)
    │   ├── InvalidSignature (400): a message signature is missing, malformed or does not verify
    │   └── StaleMessage (400): issued-at outside the allowed skew, or expired
    ├── Unauthenticated (401)
    │   ├── InvalidToken (401): an identity token failed a check
    │   └── InvalidEnrolmentCode (401): no such enrolment code, or one replaced by a newer
    │       └── EnrolmentCodeExpired (401): the code's time ran out before it was used
    ├── AccessDenied (403)
    │   ├── ConsentRequired (403): the service needs a consent and none was presented
    │   ├── ConsentDenied (403): the consent presented does not allow this request (detail: why)
    │   └── PreviewRefused (403): the citizen looked at the evidence and refused to share it
    ├── NotFound (404)
    │   └── UnknownService (404)
    ├── MethodNotAllowed (405)
    ├── NotAcceptable (406): no representation the caller accepts
    ├── Conflict (409)
    │   ├── DuplicateMessage (409): a (client, message id) pair seen before
    │   ├── RequestInProgress (409): a request with this Idempotency-Key is being answered
    │   ├── EnrolmentCodeUsed (409): the enrolment code enrolled a gateway already (once only)
    │   ├── AuditLogForked (409): a witness refused a tree head not consistent with the last
    │   │                         one it saw from that log (a fork; the witness raises an alarm)
    │   └── StaleConsistencyProof (409): the proof starts from a head the witness no longer
    │                             holds as latest; detail is the size it holds (ask again)
    ├── PayloadTooLarge (413)
    ├── IdempotencyKeyReused (422): an Idempotency-Key already used for another request
    ├── UnsupportedMediaType (415): the body is not of a type the endpoint takes
    ├── PreviewRequired (428): the citizen must look first; detail is the preview page's URL
    ├── QuotaExceeded (429): a limit of the client's access right is used up; detail names
    │                        the limit, ``retry_after`` when it frees up (``Retry-After``)
    ├── ServiceFailed (502): the registry or a peer answered with an error or garbage
    │   ├── InvalidEvidence (502): the registry's data does not satisfy the evidence schema
    │   ├── InvalidResponse (502): the peer gateway's answer is broken, unsigned or does not verify
    │   └── SslAuthenticationFailed (502): a peer's TLS certificate does not verify
    ├── ServiceUnavailable (503): the registry, a peer or a database cannot be used
    │   └── NetworkError (503): a peer cannot be reached (connection refused or dropped)
    ├── ServiceTimeout (504): the registry or a peer did not answer in time
    └── TrustError (503): the trust fabric cannot vouch for something; callers fail closed
        ├── ConfigurationInvalid (503): bad signature, other signer, other instance, bad format
        ├── ConfigurationExpired (503): the last good global configuration has expired
        ├── ConfigurationUnavailable (503): no verified global configuration is held at all
        └── CertificateStatusUnknown (503): no current CRL or OCSP answer for a certificate

Library exceptions are translated into this tree by one table (:mod:`exchange.faults`).
Messages are written for the remote caller and never carry internals; ``detail`` holds safe,
specific facts (an offending field, an identifier). Causes are chained with ``raise ... from`` and
go to the log only.
"""

from __future__ import annotations

from typing import ClassVar


class Error(Exception):
    """Root of every error this project raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "InternalError"

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    @property
    def is_client_fault(self) -> bool:
        return self.status < 500

    @property
    def xroad_type(self) -> str:
        """The X-Road error type, ``Client.<code>`` or ``Server.<code>``."""
        return f"{'Client' if self.is_client_fault else 'Server'}.{self.code}"

    def body(self) -> dict[str, str | None]:
        return {"type": self.xroad_type, "message": self.message, "detail": self.detail}


class InternalError(Error):
    """Something failed that should not have; details go to the log only."""


class LoggingFailed(Error):
    """The audit record could not be committed, so nothing was released.

    503: this gateway cannot answer anything until it can audit again; a caller may try another
    replica, and its health says so (a load balancer takes it out of service)."""

    status = 503
    code = "LoggingFailed"


class InvalidRequest(Error):
    status = 400
    code = "InvalidRequest"


class InvalidIdentifier(InvalidRequest):
    code = "InvalidIdentifier"


class InvalidCertificateRequest(InvalidRequest):
    code = "InvalidCertificateRequest"


class InvalidXml(InvalidRequest):
    code = "InvalidXml"


class InvalidSignature(InvalidRequest):
    code = "InvalidSignature"


class StaleMessage(InvalidRequest):
    code = "StaleMessage"


class Unauthenticated(Error):
    status = 401
    code = "Unauthenticated"


class InvalidToken(Unauthenticated):
    code = "InvalidToken"


class InvalidEnrolmentCode(Unauthenticated):
    """The one-time code a gateway enrols with is not one the authority issued, or was
    replaced by a newer code for the same gateway."""

    code = "InvalidEnrolmentCode"


class EnrolmentCodeExpired(InvalidEnrolmentCode):
    code = "EnrolmentCodeExpired"


class AccessDenied(Error):
    status = 403
    code = "AccessDenied"


class ConsentRequired(AccessDenied):
    code = "ConsentRequired"


class ConsentDenied(AccessDenied):
    code = "ConsentDenied"


class PreviewRefused(AccessDenied):
    code = "PreviewRefused"


class NotFound(Error):
    status = 404
    code = "NotFound"


class UnknownService(NotFound):
    code = "UnknownService"


class MethodNotAllowed(Error):
    status = 405
    code = "InvalidHttpMethod"


class NotAcceptable(Error):
    status = 406
    code = "NotAcceptable"


class Conflict(Error):
    status = 409
    code = "Conflict"


class DuplicateMessage(Conflict):
    code = "DuplicateMessage"


class RequestInProgress(Conflict):
    """The first request with this ``Idempotency-Key`` is still being answered: ask again."""

    code = "RequestInProgress"


class EnrolmentCodeUsed(Conflict):
    """The enrolment code was used: certificates are issued once per code."""

    code = "EnrolmentCodeUsed"


class AuditLogForked(Conflict):
    """A witness refused a signed tree head: not consistent with the last head it saw."""

    code = "AuditLogForked"


class StaleConsistencyProof(Conflict):
    """A head came with a consistency proof from another size than the witness's latest."""

    code = "StaleConsistencyProof"


class PayloadTooLarge(Error):
    status = 413
    code = "PayloadTooLarge"


class IdempotencyKeyReused(Error):
    """The ``Idempotency-Key`` was used before, by this client on this service, for a
    different request."""

    status = 422
    code = "IdempotencyKeyReused"


class UnsupportedMediaType(Error):
    status = 415
    code = "UnsupportedMediaType"


class PreviewRequired(Error):
    status = 428
    code = "PreviewRequired"


class QuotaExceeded(Error):
    """A limit declared on the client's access right is used up for now.

    ``detail`` names the limit (``per-second``, ``per-day``, ``persons-per-day``);
    ``retry_after`` is the whole number of seconds until it frees up, sent as ``Retry-After``.
    """

    status = 429
    code = "QuotaExceeded"

    def __init__(self, message: str, *, detail: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, detail=detail)
        self.retry_after = max(1, retry_after)


class ServiceFailed(Error):
    status = 502
    code = "ServiceFailed"


class InvalidEvidence(ServiceFailed):
    code = "InvalidEvidence"


class InvalidResponse(ServiceFailed):
    code = "InvalidResponse"


class SslAuthenticationFailed(ServiceFailed):
    code = "SslAuthenticationFailed"


class ServiceUnavailable(Error):
    status = 503
    code = "ServiceUnavailable"


class NetworkError(ServiceUnavailable):
    code = "NetworkError"


class ServiceTimeout(Error):
    status = 504
    code = "ServiceTimeout"


class TrustError(Error):
    status = 503
    code = "TrustFailure"


class ConfigurationInvalid(TrustError):
    code = "InvalidGlobalConf"


class ConfigurationExpired(TrustError):
    code = "OutdatedGlobalConf"


class ConfigurationUnavailable(TrustError):
    code = "GlobalConfUnavailable"


class CertificateStatusUnknown(TrustError):
    """The revocation status of a certificate relied on is unknown or stale (no valid CRL or
    OCSP answer within its bound): refused, never assumed good."""

    code = "CertificateStatusUnknown"
