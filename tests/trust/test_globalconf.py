from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from exchange.errors import ConfigurationExpired, ConfigurationInvalid
from exchange.trust import globalconf
from exchange.trust.keys import certificate_pem, fingerprint
from tests.conftest import NOW
from tests.factories import Signer


@pytest.fixture
def signer() -> Signer:
    return Signer(instance="EE", at=NOW)


def test_signed_document_verifies(signer: Signer) -> None:
    configuration = globalconf.verify(signer.document(version=7), signer.anchor(), at=NOW)
    assert configuration.version == 7
    assert configuration.instance == "EE"
    assert configuration.member("EE/GOV/70000310") is not None


def test_independent_jose_implementation_accepts_signature(signer: Signer) -> None:
    document = signer.document()
    key = ECKey.import_key(certificate_pem(signer.certificate).encode())
    result = jws.deserialize_compact(document.decode(), key, algorithms=["ES256"])
    assert json.loads(result.payload)["instance"] == "EE"
    assert result.protected["typ"] == globalconf.JWS_TYPE


@pytest.mark.parametrize("part", [0, 1, 2])
def test_flipped_byte_in_any_part_is_rejected(signer: Signer, part: int) -> None:
    pieces = signer.document().decode().split(".")
    raw = bytearray(base64.urlsafe_b64decode(pieces[part] + "=" * (-len(pieces[part]) % 4)))
    raw[len(raw) // 2] ^= 0x01
    pieces[part] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(ConfigurationInvalid):
        globalconf.verify(".".join(pieces).encode(), signer.anchor(), at=NOW)


def test_expired_document_is_refused(signer: Signer) -> None:
    document = signer.document(validity=timedelta(minutes=10))
    globalconf.verify(document, signer.anchor(), at=NOW + timedelta(minutes=9))
    with pytest.raises(ConfigurationExpired, match="expired"):
        globalconf.verify(document, signer.anchor(), at=NOW + timedelta(minutes=10))


def test_document_from_the_future_is_refused(signer: Signer) -> None:
    document = signer.document(at=NOW + timedelta(minutes=30))
    with pytest.raises(ConfigurationInvalid, match="generated in the future"):
        globalconf.verify(document, signer.anchor(), at=NOW)


def test_document_signed_by_another_key_is_refused(signer: Signer) -> None:
    impostor = Signer(instance="EE", at=NOW)
    with pytest.raises(ConfigurationInvalid, match="key the anchor does not hold"):
        globalconf.verify(impostor.document(), signer.anchor(), at=NOW)


def test_another_key_claiming_the_anchors_kid_is_refused(signer: Signer) -> None:
    impostor = Signer(instance="EE", at=NOW)
    forged = globalconf.sign(impostor.configuration(), impostor.key, signer.certificate)
    with pytest.raises(ConfigurationInvalid, match="signature does not verify"):
        globalconf.verify(forged, signer.anchor(), at=NOW)


def test_document_for_another_instance_is_refused(signer: Signer) -> None:
    document = signer.document(instance="FI")
    with pytest.raises(ConfigurationInvalid, match="for instance 'FI', not 'EE'"):
        globalconf.verify(document, signer.anchor(), at=NOW)


def test_anchor_of_another_instance_refuses_valid_document(signer: Signer) -> None:
    with pytest.raises(ConfigurationInvalid, match="not 'FI'"):
        globalconf.verify(signer.document(), signer.anchor(instance="FI"), at=NOW)


def test_unsigned_and_alg_none_documents_are_refused(signer: Signer) -> None:
    payload = signer.configuration().model_dump_json().encode()
    header = {"alg": "none", "typ": globalconf.JWS_TYPE, "kid": "x"}
    unsigned = b".".join(
        [
            base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"="),
            base64.urlsafe_b64encode(payload).rstrip(b"="),
            b"",
        ]
    )
    for document in (unsigned, payload, b"", b"not.a.jws"):
        with pytest.raises(ConfigurationInvalid):
            globalconf.verify(document, signer.anchor(), at=NOW)


def test_hmac_with_public_key_is_refused(signer: Signer) -> None:
    # The classic key-confusion forgery: HMAC keyed with the public certificate.
    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = {"alg": "HS256", "typ": globalconf.JWS_TYPE, "kid": fingerprint(signer.certificate)}
    payload = signer.configuration().model_dump_json().encode()
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(payload)
    secret = certificate_pem(signer.certificate).encode()
    mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
    with pytest.raises(ConfigurationInvalid, match="algorithm not allowed"):
        globalconf.verify(signing_input + b"." + b64(mac), signer.anchor(), at=NOW)


def test_wrong_document_type_is_refused(signer: Signer) -> None:
    payload = signer.configuration().model_dump_json().encode()
    other = jwt.api_jws.encode(payload, signer.key, algorithm="ES256", headers={"typ": "JWT"})
    with pytest.raises(ConfigurationInvalid, match="wrong document type"):
        globalconf.verify(other.encode(), signer.anchor(), at=NOW)


def test_unknown_format_version_is_refused(signer: Signer) -> None:
    raw = json.loads(signer.configuration().model_dump_json())
    raw["format_version"] = 2
    document = jwt.api_jws.encode(
        json.dumps(raw).encode(),
        signer.key,
        algorithm="ES256",
        headers={"typ": globalconf.JWS_TYPE, "kid": fingerprint(signer.certificate)},
    )
    with pytest.raises(ConfigurationInvalid, match="unsupported format version"):
        globalconf.verify(document.encode(), signer.anchor(), at=NOW)


def test_anchor_file_round_trip(signer: Signer, tmp_path: Path) -> None:
    path = tmp_path / "anchor.json"
    path.write_bytes(signer.anchor().dump())
    loaded = globalconf.TrustAnchor.load(path)
    assert loaded == signer.anchor()
    assert loaded.digest() == signer.anchor().digest()
    path.write_text("{}")
    with pytest.raises(ConfigurationInvalid, match="cannot be read"):
        globalconf.TrustAnchor.load(path)
