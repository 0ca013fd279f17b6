"""The one exception tree of the project.

Every failure that can reach a caller is an :class:`Error`. Each class carries one HTTP status and
one error code; the HTTP layer turns it into an X-Road style body ``{"type", "message", "detail"}``
where ``type`` is ``Client.<code>`` for the caller's faults (4xx) and ``Server.<code>`` for ours
(5xx). A gateway adds its side (``Server.ClientProxy.`` / ``Server.ServerProxy.``) at the boundary.

::

    Error (500 InternalError)
    ├── InvalidRequest (400)
    │   ├── InvalidIdentifier (400)
    │   └── InvalidCertificateRequest (400)
    ├── Unauthenticated (401)
    ├── AccessDenied (403)
    ├── NotFound (404)
    ├── Conflict (409)
    ├── PayloadTooLarge (413)
    └── TrustError (503): the trust fabric cannot vouch for something; callers fail closed
        ├── ConfigurationInvalid (503): bad signature, other signer, other instance, bad format
        ├── ConfigurationExpired (503): the last good global configuration has expired
        └── ConfigurationUnavailable (503): no verified global configuration is held at all

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


class InvalidRequest(Error):
    status = 400
    code = "InvalidRequest"


class InvalidIdentifier(InvalidRequest):
    code = "InvalidIdentifier"


class InvalidCertificateRequest(InvalidRequest):
    code = "InvalidCertificateRequest"


class Unauthenticated(Error):
    status = 401
    code = "Unauthenticated"


class AccessDenied(Error):
    status = 403
    code = "AccessDenied"


class NotFound(Error):
    status = 404
    code = "NotFound"


class Conflict(Error):
    status = 409
    code = "Conflict"


class PayloadTooLarge(Error):
    status = 413
    code = "PayloadTooLarge"


class TrustError(Error):
    status = 503
    code = "TrustFailure"


class ConfigurationInvalid(TrustError):
    code = "InvalidGlobalConf"


class ConfigurationExpired(TrustError):
    code = "OutdatedGlobalConf"


class ConfigurationUnavailable(TrustError):
    code = "GlobalConfUnavailable"
