"""Untrusted XML: every known entity and DTD attack is refused, quickly and without a connection."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from exchange.errors import InvalidXml
from exchange.evidence import xml
from exchange.evidence.xml import XML_MAX_BYTES, parse_untrusted

SECRET = "EE38001085718"  # stands for personal data inside a refused document


def billion_laughs() -> bytes:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return f'<?xml version="1.0"?><!DOCTYPE lolz [{"".join(entities)}]><lolz>&lol9;</lolz>'.encode()


def quadratic_blowup() -> bytes:
    entity = "a" * 100_000
    body = "&a;" * 50_000
    return f'<?xml version="1.0"?><!DOCTYPE k [<!ENTITY a "{entity}">]><k>{body}</k>'.encode()


def external_entity() -> bytes:
    return b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'


@contextmanager
def quickly(limit: float = 2.0) -> Iterator[None]:
    """A sanity upper bound only: each refusal takes milliseconds."""
    start = time.perf_counter()
    yield
    assert time.perf_counter() - start < limit


@contextmanager
def listening() -> Iterator[tuple[int, socket.socket]]:
    """A real TCP listener on loopback; afterwards it must have no pending connection."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        yield server.getsockname()[1], server
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


@pytest.fixture(params=["with byte scan", "parser only"])
def layer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run an attack once as-is and once with the raw-byte scan off, so the parser alone holds."""
    if request.param == "parser only":
        monkeypatch.setattr(xml, "_DTD_MARKERS", ())
    return str(request.param)


def refused(data: bytes, *, max_bytes: int = XML_MAX_BYTES) -> InvalidXml:
    with quickly(), pytest.raises(InvalidXml) as caught:
        parse_untrusted(data, max_bytes=max_bytes)
    error = caught.value
    assert error.status == 400
    assert SECRET not in error.message
    assert "root:" not in error.message
    return error


def test_accepts_a_plain_document() -> None:
    root = parse_untrusted(b'<?xml version="1.0"?><a xmlns="urn:x"><b>1</b></a>', max_bytes=100)
    assert root.tag == "{urn:x}a"
    assert root[0].text == "1"


@pytest.mark.parametrize(
    "attack", [billion_laughs, quadratic_blowup, external_entity], ids=lambda f: f.__name__
)
def test_refuses_entity_attacks(attack: object, layer: str) -> None:
    assert callable(attack)
    data = attack()
    assert len(data) < XML_MAX_BYTES
    refused(data)


def test_refuses_entity_attacks_in_utf16() -> None:
    data = billion_laughs().replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"')
    error = refused(data.decode().encode("utf-16"))
    assert "document type declaration" in error.message


def test_external_entity_is_never_read(layer: str) -> None:
    error = refused(external_entity())
    assert error.detail in {"doctype", "well-formedness"}


def test_refuses_external_dtd_without_connecting(layer: str) -> None:
    with listening() as (port, _):
        refused(f'<!DOCTYPE r SYSTEM "http://127.0.0.1:{port}/evil.dtd"><r/>'.encode())
        entity = f'<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/evil.dtd">'
        refused(f"<!DOCTYPE r [{entity} %p;]><r/>".encode())
        refused(
            f'<!DOCTYPE r PUBLIC "-//E//DTD E//EN" "http://127.0.0.1:{port}/e.dtd"><r/>'.encode()
        )


def test_the_listener_would_notice_a_connection() -> None:
    with (
        listening() as (port, server),
        socket.create_connection(("127.0.0.1", port), timeout=2),
    ):
        connection, _ = server.accept()
        connection.close()


def test_any_doctype_is_refused_even_a_harmless_one(layer: str) -> None:
    error = refused(b"<!DOCTYPE r><r/>")
    assert error.detail == "doctype"


def test_refuses_oversize_input_before_parsing() -> None:
    assert parse_untrusted(b"<a/>", max_bytes=4).tag == "a"
    error = refused(b"<a/>", max_bytes=3)
    assert error.detail == "size"
    error = refused(b"<a>" + SECRET.encode() * 100_000 + b"</a>")
    assert error.detail == "size"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<a>",
        f"<a><b>{SECRET}</a>".encode(),
        f"<{SECRET}></a>".encode(),
        b"<a>&undefined;</a>",
        b"<a/><b/>",
        b"\xff\xfe\x00garbage",
        b"<a>" * 5_000 + b"</a>" * 5_000,
    ],
    ids=[
        "empty",
        "unclosed",
        "mismatch",
        "mismatch-name",
        "undefined-entity",
        "two-roots",
        "bytes",
        "deep",
    ],
)
def test_refuses_malformed_xml_without_quoting_it(data: bytes) -> None:
    error = refused(data)
    assert error.message.startswith("XML document is not well-formed (line ")
    assert error.detail == "well-formedness"
    assert isinstance(error.__cause__, Exception)


def test_text_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        parse_untrusted("<a/>", max_bytes=10)  # type: ignore[arg-type]
