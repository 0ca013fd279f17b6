"""The one table from library exceptions to the error tree (exchange.faults)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from exchange.errors import (
    Error,
    InvalidResponse,
    InvalidSignature,
    NetworkError,
    ServiceFailed,
    ServiceTimeout,
    ServiceUnavailable,
    SslAuthenticationFailed,
)
from exchange.faults import mapped, translate


@pytest.fixture
def refused_url() -> str:
    """A URL on loopback where nothing listens: the port was bound, then let go."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


async def by_aiohttp(url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(url):
        pass


async def by_httpx(url: str) -> None:
    async with httpx.AsyncClient() as client:
        await client.get(url)


async def test_a_refused_connection_is_one_error_type_whatever_the_client(
    refused_url: str,
) -> None:
    caught: list[Error] = []
    for client in (by_aiohttp, by_httpx):
        with pytest.raises(NetworkError) as refused, mapped("the registry"):
            await client(refused_url)
        caught.append(refused.value)
    with pytest.raises(NetworkError) as refused, mapped("the registry"):
        httpx.get(refused_url)
    caught.append(refused.value)
    assert {type(error) for error in caught} == {NetworkError}
    assert {error.xroad_type for error in caught} == {"Server.NetworkError"}
    assert {error.status for error in caught} == {503}
    assert {error.message for error in caught} == {"the registry cannot be reached"}
    assert isinstance(caught[0].__cause__, aiohttp.ClientConnectorError)
    assert isinstance(caught[1].__cause__, httpx.ConnectError)
    assert isinstance(caught[2].__cause__, httpx.ConnectError)
    assert isinstance(NetworkError("x"), ServiceUnavailable)  # callers of the old type still match


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (TimeoutError(), ServiceTimeout),
        (aiohttp.ServerTimeoutError("read"), ServiceTimeout),
        (aiohttp.ConnectionTimeoutError("connect"), ServiceTimeout),
        (httpx.ReadTimeout("read"), ServiceTimeout),
        (httpx.ConnectTimeout("connect"), ServiceTimeout),
        (aiohttp.ServerDisconnectedError(), NetworkError),
        (ConnectionRefusedError(), NetworkError),
        (httpx.ConnectError("refused"), NetworkError),
        (aiohttp.ClientPayloadError("truncated"), ServiceFailed),
        (httpx.RemoteProtocolError("garbled"), ServiceFailed),
        (OperationalError("SELECT 1", {}, Exception("locked")), ServiceUnavailable),
    ],
)
def test_the_table(exception: Exception, expected: type[Error]) -> None:
    translated = translate(exception, "the registry")
    assert translated is not None
    assert type(translated) is expected
    assert translated.message.startswith("the registry ")


def test_a_certificate_that_does_not_verify_is_an_authentication_failure() -> None:
    refused = aiohttp.ClientConnectorCertificateError(
        None,  # type: ignore[arg-type]  # the connection key is only read to print it
        ssl.SSLCertVerificationError("self-signed certificate"),
    )
    assert type(translate(refused, "gateway EE/GOV/1/gw1")) is SslAuthenticationFailed


def test_a_broken_answer_takes_the_type_the_caller_names() -> None:
    broken = aiohttp.ClientPayloadError("truncated")
    assert type(translate(broken, "gateway EE/GOV/1/gw1", broken=InvalidResponse)) is (
        InvalidResponse
    )


def test_a_database_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with (
        pytest.raises(ServiceUnavailable) as caught,
        mapped("the registry database"),
        engine.connect() as connection,
    ):
        connection.execute(text("SELECT 1"))
    assert caught.value.message == "the registry database cannot be used"
    assert isinstance(caught.value.__cause__, OperationalError)


def test_errors_of_the_tree_and_unknown_exceptions_pass_unchanged() -> None:
    ours = InvalidSignature("bad")
    with pytest.raises(InvalidSignature) as kept, mapped("the registry"):
        raise ours
    assert kept.value is ours
    with pytest.raises(KeyError), mapped("the registry"):
        raise KeyError("not a library failure")
    assert translate(KeyError("x"), "the registry") is None


def test_importing_the_boundary_loads_no_fastapi_and_no_client_library() -> None:
    """Gateways, the consent service and the portal install the boundary: it must not bring
    FastAPI (about 12 MB a process), and the table only looks at libraries already loaded."""
    probe = (
        "import sys, exchange.faults, exchange.http; "
        "print(sorted(m for m in ('fastapi', 'aiohttp', 'httpx') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
