"""What records keep of an ``X-Exchange-Consent`` value: the consent's id, never the artefact."""

from __future__ import annotations

import base64
import json

import pytest

from exchange.consent.artefact import KEPT_ARTEFACT_CHARS, _consent_id, reference


def segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def artefact(claims: object) -> str:
    header = segment(json.dumps({"alg": "ES256", "typ": "exchange-consent+jwt"}).encode())
    return f"{header}.{segment(json.dumps(claims).encode())}.{segment(b's' * 64)}"


def test_an_artefact_is_kept_as_its_consent_id_without_the_person() -> None:
    # Lengths that need each amount of base64 padding: the id is read whatever the length.
    for notice in ("", "a", "ab", "abc"):
        value = artefact({"jti": "c-17", "sub": "EE38001085718", "notice": notice})
        assert reference(value) == "c-17"


@pytest.mark.parametrize(
    "payload",
    [
        "not+base64url!",
        segment(b"not json"),
        segment(b'["a", "list"]'),
        segment(b'{"jti": 17}'),
        segment(b"\xff\xfe"),
    ],
    ids=["not-base64url", "not-json", "not-an-object", "id-not-text", "not-utf-8"],
)
def test_an_unreadable_artefact_is_kept_as_such(payload: str) -> None:
    assert reference(f"eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln") == "unreadable-artefact"


def test_a_long_id_is_kept_cut_to_the_records_column() -> None:
    assert reference(artefact({"jti": "x" * 300})) == "x" * 255


def test_no_consent_is_kept_as_none() -> None:
    assert reference(None) is None


def test_an_artefact_read_again_is_read_by_its_exact_text() -> None:
    # The consumer reads the same lasting consent's artefact on request after request; any
    # other text, even one differing only in its signature, is read for itself.
    first = artefact({"jti": "c-1", "sub": "EE38001085718"})
    other = artefact({"jti": "c-2", "sub": "EE38001085718"})
    assert [reference(first), reference(other), reference(first)] == ["c-1", "c-2", "c-1"]
    head, payload, _ = first.split(".")
    assert reference(f"{head}.{payload}x.c2ln") == "unreadable-artefact"


def test_a_long_artefact_is_read_every_time_not_kept() -> None:
    long = artefact({"jti": "c-long", "note": "x" * KEPT_ARTEFACT_CHARS})
    _consent_id.cache_clear()  # a full cache would not grow either
    assert reference(long) == reference(long) == "c-long"
    assert _consent_id.cache_info().currsize == 0
