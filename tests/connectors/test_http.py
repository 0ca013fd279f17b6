from __future__ import annotations

import socket

import pytest

from connectors.base import ConnectorRequest
from connectors.http import HttpConnector, _decode
from exchange.errors import NetworkError, ServiceFailed


def test_values_fill_one_path_segment_each() -> None:
    connector = HttpConnector(
        url="http://registry/diplomas/{person}", parameters=("person", "year")
    )
    target = connector._target({"person": "../admin?x=1#", "year": "2004"})
    assert target == "http://registry/diplomas/..%2Fadmin%3Fx%3D1%23?year=2004"


def test_undeclared_placeholders_are_refused() -> None:
    with pytest.raises(ValueError, match="undeclared"):
        HttpConnector(url="http://registry/{table}/{person}", parameters=("person",))


def test_replies_must_be_objects_or_xml() -> None:
    assert _decode(b'{"a": {"b": 1}}', "application/json", 1000) == {"a.b": 1}
    for body, kind in (
        (b"[1, 2]", "application/json"),
        (b"<a>", "application/xml"),
        (b"x", "text/plain"),
    ):
        with pytest.raises(ServiceFailed):
            _decode(body, kind, 1000)
    assert _decode(b"<d><personCode>EE1</personCode></d>", "application/xml", 1000) == {
        "personCode": "EE1"
    }


@pytest.mark.parametrize("value", ["..", ".", ""])
def test_dot_segments_cannot_climb_the_backend_path(value: str) -> None:
    from exchange.errors import InvalidRequest

    connector = HttpConnector(
        url="http://registry/api/persons/{person}/birth", parameters=("person",)
    )
    with pytest.raises(InvalidRequest, match="must not be"):
        connector._target({"person": value})


async def test_a_backend_that_refuses_the_connection_is_a_network_error() -> None:
    """The same type as a refused connection anywhere else (exchange.faults); still a 503."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = HttpConnector(url=f"http://127.0.0.1:{port}/{{person}}", parameters=("person",))
    try:
        with pytest.raises(NetworkError, match="the registry cannot be reached") as refused:
            await connector.fetch(ConnectorRequest(service="s", parameters={"person": "EE1"}))
    finally:
        await connector.close()
    assert refused.value.status == 503
