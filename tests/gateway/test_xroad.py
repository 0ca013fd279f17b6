from __future__ import annotations

from urllib.parse import parse_qsl

import pytest

from exchange.errors import InvalidIdentifier, InvalidRequest, NotAcceptable
from exchange.gateway.xroad import (
    KEPT_PATH_BYTES,
    _target,
    negotiate,
    parse_target,
    query_parameters,
    read_headers,
    request_headers,
)


def test_target_keeps_the_rest_path_raw() -> None:
    target = parse_target(b"/r1/EE/GOV/1/sub/code/a%20b/c")
    assert str(target.service) == "EE/GOV/1/sub/code"
    assert target.rest_path == "/a%20b/c"
    for sneaky in (
        b"/r1/EE/GOV/1/sub/code/a%2Fb",
        b"/r1/EE/GOV/1/sub/code/%2E%2e",
        b"/r1/EE/GOV/1/sub/code/a/./b",
    ):
        with pytest.raises(InvalidRequest, match="request path segment"):
            parse_target(sneaky)
    assert parse_target(b"/r1/EE/GOV/1/sub/code").rest_path == ""


@pytest.mark.parametrize(
    "path",
    [
        b"/r1/EE/GOV/1/sub",
        b"/r1/EE/GOV/1/s%75b/code",
        b"/r1/EE/GOV/1/sub/c\xc3\xa9",
        b"/r1/EE//1/sub/code",
    ],
)
def test_bad_targets(path: bytes) -> None:
    with pytest.raises(InvalidIdentifier):
        parse_target(path)
    with pytest.raises(InvalidRequest):
        parse_target(b"/r2/EE/GOV/1/sub/code")


def test_headers() -> None:
    headers = read_headers(
        {"x-road-client": "EE/GOV/1/portal", "x-exchange-purpose": "study-grant"}, generate_id=True
    )
    assert str(headers.client) == "EE/GOV/1/portal"
    assert len(headers.message_id) == 36
    assert headers.purpose == "study-grant"
    with pytest.raises(InvalidRequest, match="X-Road-Id header is required"):
        read_headers({"x-road-client": "EE/GOV/1/portal"}, generate_id=False)
    with pytest.raises(InvalidRequest, match="X-Exchange-Purpose header is malformed"):
        read_headers(
            {"x-road-client": "EE/GOV/1/portal", "x-exchange-purpose": "a b"}, generate_id=True
        )
    with pytest.raises(InvalidRequest, match="X-Road-Id header is malformed"):
        read_headers({"x-road-client": "EE/GOV/1/portal", "x-road-id": "x" * 300}, generate_id=True)


@pytest.mark.parametrize(
    ("accept", "kind"),
    [
        (None, "json"),
        ("*/*", "json"),
        ("application/xml", "xml"),
        ("text/xml;q=0.9, application/json;q=0.5", "xml"),
        ("application/json, application/xml", "json"),
        ("text/html, application/xml;q=0.1", "xml"),
    ],
)
def test_negotiation(accept: str | None, kind: str) -> None:
    assert negotiate(accept) == kind


def test_nothing_acceptable() -> None:
    with pytest.raises(NotAcceptable):
        negotiate("text/csv, application/json;q=0")


def test_repeated_query_parameter_is_refused() -> None:
    assert query_parameters("a=1&b=%20") == {"a": "1", "b": " "}
    with pytest.raises(InvalidRequest, match="more than once"):
        query_parameters("a=1&a=2")


@pytest.mark.parametrize(
    "query",
    [
        "",
        "person=EE38001085718",
        "a=1&b=2",
        "a=%20x+y&b=%E2%82%AC&c=%ZZ&d=%C3",
        "a&b=&=c&&d==e",
        "a+b=c+d&x%3Dy=1",
        "caf\u00e9=\u00e9t\u00e9&n=%2B",
        "a=1;b=2",
    ],
)
def test_query_parameters_are_read_as_the_standard_library_reads_them(query: str) -> None:
    assert query_parameters(query) == dict(parse_qsl(query, keep_blank_values=True))


def test_a_repeated_parameter_is_refused_however_it_is_spelled() -> None:
    with pytest.raises(InvalidRequest, match="more than once"):
        query_parameters("a=1&%61=2")
    with pytest.raises(InvalidRequest, match="more than once"):
        query_parameters("a+b=1&a%20b=2")


def test_a_target_read_again_is_the_same_and_a_bad_one_is_refused_every_time() -> None:
    path = b"/r1/EE/GOV/1/sub/code/a%20b"
    assert parse_target(path) == parse_target(path)
    assert parse_target(b"/r1/EE/GOV/1/sub/other").service.service_code == "other"
    for _ in range(2):
        with pytest.raises(InvalidRequest, match="request path segment"):
            parse_target(b"/r1/EE/GOV/1/sub/code/a%2Fb")
        with pytest.raises(InvalidIdentifier):
            read_headers({"x-road-client": "EE/GOV/1/por%74al"}, generate_id=True)


def test_a_long_path_is_read_every_time_not_kept() -> None:
    """A REST path may be long: such a target is read for itself, so that the paths kept stay
    small whatever callers send."""
    long_path = b"/r1/EE/GOV/1/sub/code/" + b"a" * KEPT_PATH_BYTES
    _target.cache_clear()  # a full cache would not grow either
    assert parse_target(long_path).rest_path == "/" + "a" * KEPT_PATH_BYTES
    assert parse_target(long_path) == parse_target(long_path)
    assert _target.cache_info().currsize == 0


def test_request_headers_are_read_from_the_scope_as_the_server_gave_them() -> None:
    scope = {
        "headers": [
            (b"x-road-client", b"EE/GOV/1/portal"),
            (b"X-Road-Id", b"m-1"),
            (b"x-road-issue", b"caf\xe9"),
            (b"accept", b"application/xml"),
            (b"accept", b"application/json"),
        ]
    }
    assert request_headers(scope) == {
        "x-road-client": "EE/GOV/1/portal",
        "x-road-id": "m-1",
        "x-road-issue": "caf\u00e9",
        "accept": "application/json",  # the last of a repeated header, as before
    }
