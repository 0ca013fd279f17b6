"""Library exceptions, translated into the error tree by one table.

Outbound calls meet the exceptions of the gateways' own HTTP/1.1 client
(:mod:`exchange.gateway.pooled`), aiohttp (connectors), httpx (portal, identity, timestamping,
enrolment) and SQLAlchemy. Each leaves as one :class:`~exchange.errors.Error`,
the library exception chained as its cause, so that a failure reads the same wherever it
happens (a refused connection is a ``NetworkError`` whichever client met it)::

    aiohttp ClientConnectorCertificateError,
      ssl.SSLCertVerificationError                    -> SslAuthenticationFailed (502)
    TimeoutError (aiohttp's timeouts are TimeoutErrors),
      httpx.TimeoutException                          -> ServiceTimeout (504)
    aiohttp ClientConnectorError, ServerDisconnectedError,
      httpx.ConnectError, ConnectionRefusedError,
      pooled.Unreachable                              -> NetworkError (503)
    SQLAlchemy OperationalError, InterfaceError,
      pool TimeoutError                               -> ServiceUnavailable (503)
    any other aiohttp.ClientError or httpx.HTTPError,
      pooled.BrokenResponse                           -> ServiceFailed (502), or the
                                                         subclass the caller names (``broken``)

The first row that matches wins. A library that this process has not imported cannot have
raised, so its rows are skipped without importing it: the table costs the consent service no
aiohttp and the TSA no httpx. Anything not in the table is left alone (a bug stays a bug, and
leaves a boundary as an opaque ``InternalError``). The audit log keeps its own rule: any failed
commit is ``LoggingFailed`` (:mod:`audit.log`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from exchange.errors import (
    Error,
    InternalError,
    NetworkError,
    ServiceFailed,
    ServiceTimeout,
    ServiceUnavailable,
    SslAuthenticationFailed,
)

# (error, message, library classes), first match first: "{what}" names the other party, and
# an error of None is the caller's class for a broken answer.
_TABLE: tuple[tuple[type[Error] | None, str, tuple[str, ...]], ...] = (
    (
        SslAuthenticationFailed,
        "{what} presented a TLS certificate that does not verify",
        ("aiohttp.ClientConnectorCertificateError", "ssl.SSLCertVerificationError"),
    ),
    (
        ServiceTimeout,
        "{what} did not answer in time",
        ("builtins.TimeoutError", "httpx.TimeoutException"),
    ),
    (
        NetworkError,
        "{what} cannot be reached",
        (
            "aiohttp.ClientConnectorError",
            "aiohttp.ServerDisconnectedError",
            "httpx.ConnectError",
            "builtins.ConnectionRefusedError",
            "exchange.gateway.pooled.Unreachable",
        ),
    ),
    (
        ServiceUnavailable,
        "{what} cannot be used",
        (
            "sqlalchemy.exc.OperationalError",
            "sqlalchemy.exc.InterfaceError",
            "sqlalchemy.exc.TimeoutError",  # no free connection in the pool
        ),
    ),
    (None, "{what} answered with an HTTP error status", ("httpx.HTTPStatusError",)),
    (
        None,
        "{what} sent a broken HTTP response",
        ("aiohttp.ClientError", "httpx.HTTPError", "exchange.gateway.pooled.BrokenResponse"),
    ),
)


def translate(
    exc: BaseException, what: str, *, broken: type[ServiceFailed] = ServiceFailed
) -> Error | None:
    """The error for ``exc``, met while talking to ``what``; ``None`` if the table has no row.

    ``broken`` is the class of a broken answer: a gateway's peer sends ``InvalidResponse``.
    """
    for error, message, names in _TABLE:
        if any(_is(exc, name) for name in names):
            return (error or broken)(message.format(what=what))
    return None


def _is(exc: BaseException, qualified: str) -> bool:
    module, _, name = qualified.rpartition(".")
    kind = getattr(sys.modules.get(module), name, None)  # builtins is always there
    return isinstance(kind, type) and isinstance(exc, kind)


@contextlib.contextmanager
def mapped(what: str, *, broken: type[ServiceFailed] = ServiceFailed) -> Iterator[None]:
    """Run the block; a library exception in the table leaves it as its error, chained.

    Errors of the tree and exceptions the table does not know pass unchanged.
    """
    try:
        yield
    except Error:
        raise
    except Exception as exc:
        error = translate(exc, what, broken=broken)
        if error is None:
            raise
        raise error from exc


def error_of(exc: BaseException) -> Error:
    """What a boundary answers for ``exc``: itself if it is an :class:`Error`, else the table's
    error, else an opaque ``InternalError``; the original is the cause either way."""
    if isinstance(exc, Error):
        return exc
    error = translate(exc, "a service this one depends on") or InternalError(
        "internal error; the operator's log has the details"
    )
    error.__cause__ = exc
    return error
