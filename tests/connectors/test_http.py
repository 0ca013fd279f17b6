from __future__ import annotations

import socket

import pytest

from connectors.base import ConnectorRequest
from connectors.http import HttpConnector, _decode
from exchange.errors import InvalidRequest, NetworkError, ServiceFailed
from tests.gateway.registry_server import running_registry


def test_values_fill_one_path_segment_each() -> None:
    connector = HttpConnector(
        url="http://registry/diplomas/{person}", parameters=("person", "year")
    )
    target = connector._target({"person": "EE1?x=1#%41 b", "year": "2004"})
    assert target == "http://registry/diplomas/EE1%3Fx%3D1%23%2541%20b?year=2004"


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


OTHER_PATHS = [
    *(".", "..", "../redirect", "a/../../x", "a/b", "a\\b", "/"),
    *("%2e", "%2E%2e", "..%2Fredirect", "%2f", "a%5Cb", "a%5cb"),  # what a backend decodes
    *("%252F", "%25252f", "%255C", "%252e%252e"),  # and what a proxy decodes first
    *("EE1\x00", "EE1\n", "EE1\r\n", "\t", "EE1\x7f", "EE1\x85", "EE1%00", "EE1%0a"),
    *("\uff0e\uff0e", "a\uff0fb", "a\uff3cb"),  # fullwidth dots and slashes, folded by NFKC
    "a\uff05\uff12\uff26b",  # a fullwidth "%2F": folds to an escape, which decodes to "/"
    *("EE1%ff", "%c0%af"),  # escapes that are not UTF-8 (an overlong '/')
]


@pytest.mark.parametrize("value", OTHER_PATHS)
async def test_path_values_a_backend_would_read_as_another_path_are_refused(value: str) -> None:
    """Refused before anything is sent: the connector points at a port where nothing listens,
    so asking would be a NetworkError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = HttpConnector(
        url=f"http://127.0.0.1:{port}/api/persons/{{person}}/birth", parameters=("person",)
    )
    try:
        with pytest.raises(InvalidRequest, match="one path segment") as refused:
            await connector.fetch(ConnectorRequest(service="s", parameters={"person": value}))
    finally:
        await connector.close()
    assert refused.value.status == 400
    assert refused.value.detail == "person"  # the parameter, never the value (a person's code)


def test_values_in_the_query_are_only_encoded() -> None:
    connector = HttpConnector(url="http://registry/diplomas", parameters=("person",))
    assert connector._target({"person": "../a/b"}) == "http://registry/diplomas?person=..%2Fa%2Fb"


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


async def test_the_probe_reaches_the_backend_without_asking_for_a_record() -> None:
    """A HEAD on the address before its first placeholder: any answer below 500 shows the
    backend is there; no record is asked for."""
    with running_registry() as registry:
        connector = HttpConnector(url=f"{registry.url}/diplomas/{{person}}", parameters=("person",))
        try:
            said = await connector.probe()
        finally:
            await connector.close()
        assert said == f"the backend answered HTTP 404 at {registry.url}/diplomas/"
        assert registry.calls == 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = HttpConnector(url=f"http://127.0.0.1:{port}/{{person}}", parameters=("person",))
    try:
        with pytest.raises(NetworkError, match="the backend cannot be reached"):
            await gone.probe()
    finally:
        await gone.close()
