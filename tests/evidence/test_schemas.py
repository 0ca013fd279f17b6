"""Evidence schemas: dict -> XML/JSON -> dict for every type, strict refusals, safe errors."""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.errors import InvalidEvidence, InvalidXml, NotFound
from exchange.evidence.schemas import EvidenceSchema, EvidenceSchemaError, EvidenceSchemas

SCHEMAS = Path(__file__).parents[2] / "schemas"
TYPES = ["birth-certificate", "business-registration", "diploma", "residence-record"]
ROOTS = {
    "birth-certificate": "BirthCertificate",
    "business-registration": "BusinessRegistration",
    "diploma": "Diploma",
    "residence-record": "ResidenceRecord",
}


def birth_certificate() -> dict[str, Any]:
    return {
        "personCode": "EE38001085718",
        "givenName": "Mari-Liis",
        "familyName": "Männik",
        "dateOfBirth": date(1980, 1, 8),
        "placeOfBirth": {"municipality": "Tartu", "country": "EE"},
        "sex": "F",
        "mother": {"personCode": "EE45501010000", "givenName": "Anna", "familyName": "Männik"},
        "father": {"givenName": "Jaan", "familyName": "Männik"},
        "registrationNumber": "1-2/345",
        "registeredOn": date(1980, 1, 15),
        "issuingAuthority": "Tartu Vital Statistics Office",
    }


def residence_record() -> dict[str, Any]:
    return {
        "personCode": "EE38001085718",
        "givenName": "Mari-Liis",
        "familyName": "Männik",
        "address": {
            "street": "Narva mnt",
            "building": "5",
            "apartment": "12",
            "postalCode": "10117",
            "municipality": "Tallinn",
            "country": "EE",
        },
        "residentSince": date(2015, 6, 1),
        "registrationNumber": "RR-2015/0601",
    }


def business_registration() -> dict[str, Any]:
    return {
        "registryCode": "12345678",
        "name": "Maasikas OÜ",
        "legalForm": "private-limited-company",
        "status": "active",
        "registeredOn": date(2001, 5, 2),
        "address": {
            "street": "Pikk",
            "building": "2",
            "postalCode": "10123",
            "municipality": "Tallinn",
            "country": "EE",
        },
        "boardMembers": {
            "boardMember": [
                {
                    "personCode": "EE38001085718",
                    "givenName": "Mari",
                    "familyName": "Männik",
                    "role": "chair",
                },
                {"givenName": "John", "familyName": "Smith", "role": "member"},
            ]
        },
        "shareCapital": {"amount": Decimal("2500.00"), "currency": "EUR"},
    }


def diploma() -> dict[str, Any]:
    return {
        "personCode": "EE38001085718",
        "givenName": "Mari-Liis",
        "familyName": "Männik",
        "institution": {"name": "University of Tartu", "registryCode": "74001073"},
        "qualification": {"title": "Master of Science in Informatics", "level": "master"},
        "fieldOfStudy": "Informatics",
        "awardedOn": date(2004, 6, 18),
        "diplomaNumber": "MA-123456",
        "honours": True,
    }


EXAMPLES: dict[str, Callable[[], dict[str, Any]]] = {
    "birth-certificate": birth_certificate,
    "business-registration": business_registration,
    "diploma": diploma,
    "residence-record": residence_record,
}


def as_json(value: Any) -> Any:
    """What the JSON form of a decoded value must be: ISO dates, decimals as exact strings."""
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


@pytest.fixture(scope="module")
def schemas() -> EvidenceSchemas:
    return EvidenceSchemas.load(SCHEMAS)


@pytest.fixture(scope="module")
def reference() -> Callable[[str], xmlschema.XMLSchema]:
    """The same XSDs in xmlschema, as a second opinion on what libxml2 decides."""
    cache: dict[str, xmlschema.XMLSchema] = {}

    def get(evidence_type: str) -> xmlschema.XMLSchema:
        if evidence_type not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("error", xmlschema.XMLSchemaImportWarning)
                cache[evidence_type] = xmlschema.XMLSchema(
                    str(SCHEMAS / f"{evidence_type}.xsd"),
                    allow="sandbox",
                    base_url=str(SCHEMAS),
                    defuse="always",
                )
        return cache[evidence_type]

    return get


def invalid(schema: EvidenceSchema, evidence: dict[str, Any]) -> InvalidEvidence:
    with pytest.raises(InvalidEvidence) as caught:
        schema.to_xml(evidence)
    with pytest.raises(InvalidEvidence) as caught_json:
        schema.to_json(evidence)
    assert caught_json.value.message == caught.value.message
    error = caught.value
    assert error.message.startswith(f"{schema.evidence_type} evidence is invalid: /{schema.root}")
    assert error.status == 502
    return error


@contextmanager
def listening() -> Iterator[int]:
    """A real TCP listener on loopback; afterwards it must have no pending connection."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        yield server.getsockname()[1]
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_loads_every_schema_once(schemas: EvidenceSchemas) -> None:
    assert schemas.types() == TYPES
    for evidence_type in TYPES:
        schema = schemas.get(evidence_type)
        assert schema.evidence_type == evidence_type
        assert schema.root == ROOTS[evidence_type]
        assert schema.namespace == f"urn:exchange:evidence:{evidence_type}:1"
        assert schemas.get(evidence_type) is schema


def test_unknown_evidence_type_is_not_found(schemas: EvidenceSchemas) -> None:
    with pytest.raises(NotFound) as caught:
        schemas.get("marriage-certificate")
    assert caught.value.status == 404
    assert "marriage-certificate" in caught.value.message
    with pytest.raises(NotFound) as caught:
        schemas.get("../<script>")
    assert "<script>" not in caught.value.message


@pytest.mark.parametrize("evidence_type", TYPES)
def test_round_trip(schemas: EvidenceSchemas, evidence_type: str) -> None:
    schema = schemas.get(evidence_type)
    evidence = EXAMPLES[evidence_type]()
    document = schema.to_xml(evidence)
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n")
    assert f'<{schema.root} xmlns="{schema.namespace}">'.encode() in document
    assert schema.from_xml(document) == evidence
    assert json.loads(schema.to_json(evidence)) == {schema.root: as_json(evidence)}


@pytest.mark.parametrize("evidence_type", TYPES)
def test_both_validators_agree_on_the_encoded_document(
    schemas: EvidenceSchemas, reference: Callable[[str], xmlschema.XMLSchema], evidence_type: str
) -> None:
    document = schemas.get(evidence_type).to_xml(EXAMPLES[evidence_type]())
    reference(evidence_type).validate(document)


def test_json_form(schemas: EvidenceSchemas) -> None:
    text = schemas.get("business-registration").to_json(business_registration())
    assert text.startswith(b'{"BusinessRegistration":{"registryCode":"12345678","name":"Maasikas O')
    assert '"name":"Maasikas OÜ"'.encode() in text
    assert b'"shareCapital":{"amount":"2500.00","currency":"EUR"}' in text
    assert b'"registeredOn":"2001-05-02"' in text
    assert b'"honours":true' in schemas.get("diploma").to_json(diploma())
    assert schemas.get("diploma").to_json(diploma()) == schemas.get("diploma").to_json(diploma())


def test_values_are_normalised_by_the_schema(schemas: EvidenceSchemas) -> None:
    schema = schemas.get("diploma")
    evidence = diploma() | {"givenName": "  Mari \t Liis ", "awardedOn": "2004-06-18"}
    evidence["honours"] = "1"
    decoded = schema.from_xml(schema.to_xml(evidence))
    assert decoded["givenName"] == "Mari Liis"
    assert decoded["awardedOn"] == date(2004, 6, 18)
    assert decoded["honours"] is True
    assert json.loads(schema.to_json(evidence))["Diploma"]["givenName"] == "Mari Liis"


def test_only_xml_white_space_is_collapsed(schemas: EvidenceSchemas) -> None:
    schema = schemas.get("birth-certificate")
    evidence = birth_certificate() | {
        "givenName": " \u00a0Mari\u3000 ",
        "issuingAuthority": "\u00a0",
    }
    decoded = schema.from_xml(schema.to_xml(evidence))
    assert decoded["givenName"] == "\u00a0Mari\u3000"
    assert decoded["issuingAuthority"] == "\u00a0"


def test_optional_elements_may_be_absent_or_none(schemas: EvidenceSchemas) -> None:
    schema = schemas.get("birth-certificate")
    evidence = birth_certificate()
    del evidence["father"]
    evidence["mother"] = None
    assert schema.from_xml(schema.to_xml(evidence)) == {
        key: value for key, value in evidence.items() if value is not None
    }


def mutate(evidence: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    target = evidence
    for part in parents:
        target = target[part]
    if value is DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return evidence


DELETE = object()
REFUSALS = [
    # (evidence type, dotted field, new value, expected path, words of the reason)
    ("birth-certificate", "sex", DELETE, "/BirthCertificate/sex", "is required"),
    (
        "birth-certificate",
        "placeOfBirth.country",
        DELETE,
        "/BirthCertificate/placeOfBirth/country",
        "is required",
    ),
    (
        "birth-certificate",
        "dateOfBirth",
        19800108,
        "/BirthCertificate/dateOfBirth",
        "must be a date",
    ),
    (
        "birth-certificate",
        "dateOfBirth",
        "1980-02-30",
        "/BirthCertificate/dateOfBirth",
        "not a valid value",
    ),
    (
        "birth-certificate",
        "dateOfBirth",
        "08.01.1980",
        "/BirthCertificate/dateOfBirth",
        "not a valid value",
    ),
    (
        "birth-certificate",
        "registeredOn",
        "1980-01-15+02:00",
        "/BirthCertificate/registeredOn",
        "required form",
    ),
    ("birth-certificate", "sex", "Q", "/BirthCertificate/sex", "not one of the allowed values"),
    (
        "birth-certificate",
        "personCode",
        "38001085718",
        "/BirthCertificate/personCode",
        "required form",
    ),
    ("birth-certificate", "givenName", "x" * 101, "/BirthCertificate/givenName", "too long"),
    ("birth-certificate", "familyName", "   ", "/BirthCertificate/familyName", "too short"),
    (
        "birth-certificate",
        "givenName",
        "Ma\x00ri",
        "/BirthCertificate/givenName",
        "XML cannot carry",
    ),
    ("birth-certificate", "mother", "Anna", "/BirthCertificate/mother", "must be a mapping"),
    (
        "birth-certificate",
        "nationality",
        "EE",
        "/BirthCertificate",
        "'nationality' is not an element",
    ),
    ("birth-certificate", "sex", ["F"], "/BirthCertificate/sex", "not a list"),
    (
        "residence-record",
        "address.country",
        "Estonia",
        "/ResidenceRecord/address/country",
        "required form",
    ),
    ("residence-record", "residentSince", DELETE, "/ResidenceRecord/residentSince", "is required"),
    (
        "business-registration",
        "status",
        "bankrupt",
        "/BusinessRegistration/status",
        "allowed values",
    ),
    (
        "business-registration",
        "legalForm",
        "llc",
        "/BusinessRegistration/legalForm",
        "allowed values",
    ),
    (
        "business-registration",
        "boardMembers.boardMember",
        [],
        "/BusinessRegistration/boardMembers/boardMember",
        "is required",
    ),
    (
        "business-registration",
        "boardMembers.boardMember",
        {"givenName": "A"},
        "/BusinessRegistration/boardMembers/boardMember",
        "must be a list",
    ),
    (
        "business-registration",
        "shareCapital.amount",
        Decimal("-1"),
        "/BusinessRegistration/shareCapital/amount",
        "out of range",
    ),
    (
        "business-registration",
        "shareCapital.amount",
        Decimal("1.005"),
        "/BusinessRegistration/shareCapital/amount",
        "decimal places",
    ),
    (
        "business-registration",
        "shareCapital.amount",
        "lots",
        "/BusinessRegistration/shareCapital/amount",
        "not a valid value",
    ),
    (
        "business-registration",
        "shareCapital.amount",
        True,
        "/BusinessRegistration/shareCapital/amount",
        "must be a decimal",
    ),
    ("diploma", "honours", "yes", "/Diploma/honours", "not a valid value"),
    ("diploma", "honours", 1, "/Diploma/honours", "must be a boolean"),
    ("diploma", "qualification.level", "phd", "/Diploma/qualification/level", "allowed values"),
    (
        "diploma",
        "awardedOn",
        date(2004, 6, 18).isoformat() + "T00:00:00",
        "/Diploma/awardedOn",
        "not a valid value",
    ),
]


@pytest.mark.parametrize(("evidence_type", "field", "value", "path", "reason"), REFUSALS)
def test_refuses_evidence_that_does_not_fit(
    schemas: EvidenceSchemas, evidence_type: str, field: str, value: Any, path: str, reason: str
) -> None:
    schema = schemas.get(evidence_type)
    error = invalid(schema, mutate(EXAMPLES[evidence_type](), field, value))
    assert error.detail == path
    assert reason in error.message
    if isinstance(value, str) and len(value) > 1:
        assert value not in error.message


def test_refuses_a_board_member_by_position(schemas: EvidenceSchemas) -> None:
    evidence = business_registration()
    evidence["boardMembers"]["boardMember"][1]["role"] = "owner"
    error = invalid(schemas.get("business-registration"), evidence)
    assert error.detail == "/BusinessRegistration/boardMembers/boardMember[2]/role"


def test_from_xml_refuses_documents_outside_the_schema(
    schemas: EvidenceSchemas, reference: Callable[[str], xmlschema.XMLSchema]
) -> None:
    schema = schemas.get("birth-certificate")
    good = schema.to_xml(birth_certificate())
    cases = {
        good.replace(b"<sex>F</sex>", b"<sex>Q</sex>"): "/BirthCertificate/sex",
        good.replace(b"<sex>F</sex>", b""): "/BirthCertificate/mother",
        good.replace(b"<sex>", b'<sex code="1">'): "/BirthCertificate/sex",
        good.replace(b"<sex>F</sex>", b"<sex>F</sex><EE38001085718>x</EE38001085718>"): (
            "/BirthCertificate/*"
        ),
        good.replace(b"<issuingAuthority>", b"<issuingAuthority><b>x</b>"): (
            "/BirthCertificate/issuingAuthority"
        ),
        good.replace(b"</BirthCertificate>", b"oops</BirthCertificate>"): "/BirthCertificate",
        good.replace(b"1980-01-08", b"1980-13-08"): "/BirthCertificate/dateOfBirth",
    }
    for document, path in cases.items():
        with pytest.raises(InvalidEvidence) as caught:
            schema.from_xml(document)
        assert caught.value.detail == path
        assert "EE38001085718" not in caught.value.message
        assert not reference("birth-certificate").is_valid(document)


def test_from_xml_refuses_another_root_or_namespace(schemas: EvidenceSchemas) -> None:
    schema = schemas.get("birth-certificate")
    document = schemas.get("diploma").to_xml(diploma())
    with pytest.raises(InvalidEvidence) as caught:
        schema.from_xml(document)
    assert "BirthCertificate" in caught.value.message
    other = schema.to_xml(birth_certificate()).replace(
        b":birth-certificate:1", b":birth-certificate:2"
    )
    with pytest.raises(InvalidEvidence):
        schema.from_xml(other)


def test_from_xml_refuses_bad_xml_as_xml(schemas: EvidenceSchemas) -> None:
    schema = schemas.get("birth-certificate")
    good = schema.to_xml(birth_certificate())
    with pytest.raises(InvalidXml):
        schema.from_xml(good[:-5])
    with pytest.raises(InvalidXml) as caught:
        schema.from_xml(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + good[39:])
    assert caught.value.detail == "doctype"


def test_from_xml_ignores_comments_and_processing_instructions(schemas: EvidenceSchemas) -> None:
    schema = schemas.get("birth-certificate")
    document = schema.to_xml(birth_certificate()).replace(
        b"<givenName>Mari-Liis", b"<givenName><!-- c -->Mari<?pi x?>-Liis<!-- d -->"
    )
    assert schema.from_xml(document)["givenName"] == "Mari-Liis"


def test_schema_location_hints_are_never_followed(
    schemas: EvidenceSchemas, reference: Callable[[str], xmlschema.XMLSchema]
) -> None:
    schema = schemas.get("birth-certificate")
    with listening() as port:
        hint = (
            f' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation='
            f'"{schema.namespace} http://127.0.0.1:{port}/evil.xsd"'
        )
        document = schema.to_xml(birth_certificate()).replace(
            f'xmlns="{schema.namespace}"'.encode(), f'xmlns="{schema.namespace}"{hint}'.encode()
        )
        assert b"evil.xsd" in document
        assert schema.from_xml(document) == birth_certificate()
        assert reference("birth-certificate").is_valid(document)


XSD_HEAD = (
    '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" '
    'xmlns="urn:t" elementFormDefault="qualified">'
)
BROKEN_SCHEMAS = {
    "not-xml": "<xs:schema",
    "two-roots": XSD_HEAD
    + '<xs:element name="A" type="xs:string"/><xs:element name="B" type="xs:string"/></xs:schema>',
    "no-root": XSD_HEAD + "</xs:schema>",
    "import": XSD_HEAD
    + '<xs:import namespace="urn:o" schemaLocation="http://127.0.0.1:9/o.xsd"/>'
    + '<xs:element name="A" type="xs:string"/></xs:schema>',
    "include": XSD_HEAD
    + '<xs:include schemaLocation="other.xsd"/><xs:element name="A" type="xs:string"/></xs:schema>',
    "unknown-type": XSD_HEAD + '<xs:element name="A" type="Nothing"/></xs:schema>',
    "attributes": XSD_HEAD
    + '<xs:element name="A"><xs:complexType><xs:attribute name="a"/></xs:complexType></xs:element>'
    + "</xs:schema>",
    "choice": XSD_HEAD
    + '<xs:element name="A"><xs:complexType><xs:choice><xs:element name="b" type="xs:string"/>'
    + "</xs:choice></xs:complexType></xs:element></xs:schema>",
    "unsupported-type": XSD_HEAD + '<xs:element name="A" type="xs:duration"/></xs:schema>',
    "Bad_Name": XSD_HEAD + '<xs:element name="A" type="xs:string"/></xs:schema>',
}


@pytest.mark.parametrize("name", BROKEN_SCHEMAS)
def test_a_broken_schema_fails_loudly_at_load(tmp_path: Path, name: str) -> None:
    (tmp_path / f"{name}.xsd").write_text(BROKEN_SCHEMAS[name])
    with pytest.raises(EvidenceSchemaError, match=name):
        EvidenceSchemas.load(tmp_path)


def test_an_empty_folder_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(EvidenceSchemaError):
        EvidenceSchemas.load(tmp_path)


# Separators other than " " are left out: xmlschema (the second opinion) strips them as if they
# were XML white space, which the XSD rules and libxml2 do not (see the test above).
characters = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc", "Cn", "Zs", "Zl", "Zp"), include_characters=" "
)
names = st.text(characters, max_size=100)
tokens = names.map(lambda text: " ".join(part for part in text.split(" ") if part)).filter(bool)
person_codes = st.from_regex(r"[A-Z]{2}[0-9A-Za-z]{1,30}", fullmatch=True)
parents = st.fixed_dictionaries(
    {"givenName": tokens, "familyName": tokens}, optional={"personCode": person_codes}
)
birth_certificates = st.fixed_dictionaries(
    {
        "personCode": person_codes,
        "givenName": tokens,
        "familyName": tokens,
        "dateOfBirth": st.dates(),
        "placeOfBirth": st.fixed_dictionaries(
            {"municipality": tokens, "country": st.from_regex(r"[A-Z]{2}", fullmatch=True)}
        ),
        "sex": st.sampled_from(["F", "M", "X"]),
        "registrationNumber": st.from_regex(r"[0-9A-Za-z][0-9A-Za-z/.\-]{0,39}", fullmatch=True),
        "registeredOn": st.dates(),
        "issuingAuthority": tokens,
    },
    optional={"mother": parents, "father": parents},
)


@settings(max_examples=150, deadline=None)
@given(evidence=birth_certificates)
def test_any_valid_birth_certificate_round_trips(
    schemas: EvidenceSchemas,
    reference: Callable[[str], xmlschema.XMLSchema],
    evidence: dict[str, Any],
) -> None:
    schema = schemas.get("birth-certificate")
    document = schema.to_xml(evidence)
    assert schema.from_xml(document) == evidence
    assert json.loads(schema.to_json(evidence)) == {"BirthCertificate": as_json(evidence)}
    assert reference("birth-certificate").is_valid(document)


def decoded_json(schema: EvidenceSchema, evidence: dict[str, Any]) -> bytes:
    """The JSON answer by its definition: the validated document, decoded, as compact JSON."""
    value = schema.from_xml(schema.to_xml(evidence))

    def plain(item: object) -> str:
        if isinstance(item, Decimal):
            return format(item, "f")
        assert isinstance(item, date)
        return item.isoformat()

    text = json.dumps(
        {schema.root: value}, ensure_ascii=False, separators=(",", ":"), default=plain
    )
    return text.encode("utf-8")


@pytest.mark.parametrize("evidence_type", TYPES)
def test_json_is_the_decoded_document_byte_for_byte(
    schemas: EvidenceSchemas, evidence_type: str
) -> None:
    """The JSON answer is built in the same pass that encodes the document for validation; it
    is exactly the validated document decoded, for every type and for awkward text."""
    schema = schemas.get(evidence_type)
    evidence = EXAMPLES[evidence_type]()
    assert schema.to_json(evidence) == decoded_json(schema, evidence)
    if evidence_type == "diploma":
        name = ' "Mari"\t\\ Liis\n\u00e9\u2028\U0001f600 '
        awkward = evidence | {"givenName": name, "honours": "1"}
        assert schema.to_json(awkward) == decoded_json(schema, awkward)


@settings(max_examples=100, deadline=None)
@given(evidence=birth_certificates)
def test_any_birth_certificate_answers_the_json_of_its_document(
    schemas: EvidenceSchemas, evidence: dict[str, Any]
) -> None:
    schema = schemas.get("birth-certificate")
    assert schema.to_json(evidence) == decoded_json(schema, evidence)
