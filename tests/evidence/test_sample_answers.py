"""The answers the sample registers' evidence encodes to, byte for byte, pinned.

A provider signs the bytes :meth:`EvidenceSchema.to_json` (or ``to_xml``) returns, and consumers
may keep or compare them: a change to how an answer is built must not change one byte of it. The
digests below are those of the answers as first released; each document is built from a sample
register through its real connector (text columns, a JSON column), from the sample university's
backend (text), from typed Python values, and from text that needs escaping or normalising.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from connectors.base import ConnectorRequest
from connectors.sql import SqlConnector
from exchange.errors import InvalidEvidence
from exchange.evidence.schemas import EvidenceSchema, EvidenceSchemas
from exchange.sample import business, population, university
from tests.evidence.test_schemas import EXAMPLES, SCHEMAS, decoded_json

BIRTH_OF_MARI = (
    b'{"BirthCertificate":{"personCode":"EE38001085718","givenName":"Mari","familyName":"Tamm",'
    b'"dateOfBirth":"1980-01-08","placeOfBirth":{"municipality":"Tallinn","country":"EE"},'
    b'"sex":"F","mother":{"givenName":"Anne","familyName":"Tamm"},'
    b'"father":{"givenName":"Jaan","familyName":"Tamm"},"registrationNumber":"B-1980-000123",'
    b'"registeredOn":"1980-01-15","issuingAuthority":"Population Register of Estonia"}}'
)

# (evidence type, what, sha256 of to_json, sha256 of to_xml)
PINNED: list[tuple[str, str, str, str]] = [
    (
        "birth-certificate",
        "birth-certificate EE38001085718",
        "ee22e0c8bdcc6fcc89a4eef8b5421d9bb9571b999e1081d75bb9b081c98c21c8",
        "54703b420f29687457c40e8481e18d3fb385a6331859ba84a38ec0ea40b36c5e",
    ),
    (
        "birth-certificate",
        "birth-certificate EE39107156021",
        "52a5a46d167363a5eb00433465aa2c6c91ed958bbdad33e85446652bf28f75c3",
        "fad3b216a363db86867a944010aabeaa9fa0207e8d917808e3756b940162d79b",
    ),
    (
        "birth-certificate",
        "birth-certificate EE50203110012",
        "04f22806eec242b8d64f8906bfe8160affbc9c6ceb10f19d7f21575a45e1bb92",
        "50cdd6e001a8066b03e02ebb538a037c027a16e4bfa1f9bf4a21df38df1c3999",
    ),
    (
        "birth-certificate",
        "birth-certificate EE46512240229",
        "5c2c7432fc5fc37a99ec35379e8ea2f8c3b24b52b181a406a0e1935917f79064",
        "5c3fca3f37669db63197ee6389a7c21d579bc39574b034d35dd21f8a3ddb0c3a",
    ),
    (
        "residence-record",
        "residence-record EE38001085718",
        "413010ef099576e62372d4fd0366f1a8dccd73e1a34908f146958374cb017951",
        "dbf6ee8cb930ff02b788fb88fdc767e0ada8460e2023e7cdca89f75bcd16ed43",
    ),
    (
        "residence-record",
        "residence-record EE39107156021",
        "a41ae7a640a1c4e909a1925d43687ac1596d41018847ccd9aa753368877b2666",
        "1698007f28e0cff529111b68f5174f6ba9ed1533f8d4e9e70cbd91b71a02dc12",
    ),
    (
        "residence-record",
        "residence-record EE50203110012",
        "efd0f96946e2fb6c831a3346f2cc072c83a8df72a73566382f42a04abc17c729",
        "c1e20b9a57afae35ac6f18f8e537b7e69c482375afddfe3c339fb546d5d0ca41",
    ),
    (
        "business-registration",
        "business-registration 10137319",
        "5b09d57261cd73d824a11057a1a149eeb6eef0874d461d7e2e5700a19a539cae",
        "4b6ff36e1d7cf2814f13bc9af124e29f41341fb3583c750938fe5332418bf9b1",
    ),
    (
        "business-registration",
        "business-registration 12345678",
        "f3dd0e0c4aef4d35338d9305f3e688239cf95195e9b5be742f5286501b9da0b5",
        "1c5aca0295fc8b786077e6d68209ce393c3e7a73761cc88c19b7d0a822c82dbd",
    ),
    (
        "business-registration",
        "business-registration 80012345",
        "b8259184fc15ee24a6710f954524d893f15ceb08fec66bc55de68f4c2604b105",
        "a0f3db70eab674280fe1e2e52f3b088039413b4520e507173c29c6f113555aec",
    ),
    (
        "diploma",
        "diploma EE38001085718",
        "2d05bdc1a1452e65f26330671478cfb80dd5dd7b6d49ca1e27908f20f13d7509",
        "557b0f1886c8bc538b74d2ff88fdd53089807d984e209361a5a2887e310b3920",
    ),
    (
        "diploma",
        "diploma EE39107156021",
        "c1575a90f0674e47bd1f3d425114578160d2326d50fa95215cfe5adab890f95c",
        "15fc898902e0b1b796eaa601ad2e1e4b46fb93e94b7c69ad33d6ffbfa61ba75f",
    ),
    (
        "diploma",
        "diploma EE50203110012",
        "1f73875328677456fe9d58b2ef71dfa8d5cf3be3a4fb3f17c4a325239e5ddcf9",
        "c204843412991973c050165851fa3711b96685bec8c9038a044e6eb8efa261d4",
    ),
    (
        "birth-certificate",
        "birth-certificate typed",
        "ec3688ece11f876a174bf833d3b756fd5a83a69a6f2e1afb692f570ddf280ba7",
        "e6e06849c2b7d05b3072705b3a748ce853d5c42293d98cbc0f51a488de78398a",
    ),
    (
        "business-registration",
        "business-registration typed",
        "697e3b3d75c4ecf6eeaae042ac77e63d70f5c745d29d6056e80a4d6b9e391601",
        "da4d6d521ee5bf3085fa0ed81bf747f714894042ed9f899a23f0e9f15ede1e9c",
    ),
    (
        "diploma",
        "diploma typed",
        "02990563aa6531052966af4759a7e04f13243a4da487afdd6b900f3a0775fbda",
        "57f99e7c414547bcce87b63831bbd63b8965a064f63a7918be39092812609636",
    ),
    (
        "residence-record",
        "residence-record typed",
        "370533ad2dfc7e9ebd0976127313bdd901d26a9c7a65a60faaee43fd1b69e564",
        "1ab513aad27b9a189fd017f7e3ddbe9d5e773a54e196402a656720394189aa2a",
    ),
    (
        "diploma",
        "diploma escaped",
        "c0c3eba87f5403ad8ec2efe7d2692ae2264480a0a40e3f39ea7d683769165bb2",
        "b699134ffc0d77a58c275027a4c388c790782350bddaf00c945d87ac6a2557cb",
    ),
    (
        "birth-certificate",
        "birth-certificate spaced",
        "610f70b35293ad99e6c75117cce656f477e2d1ae993c435e811b63bedf476b49",
        "bce5d6dce8f0799be665b554c769aa3dac2fcfb2638762ac89cdc7044ff5985a",
    ),
    (
        "business-registration",
        "business-registration text amount",
        "372bc4c42774b97882a8ecd600a85d48a4821bb3718e70b9978ffa2952bac034",
        "e58d11f1f88f0113e306f1d21bdc83b47fb823f09db8871865e8582ee3922926",
    ),
    (
        "business-registration",
        "business-registration integer amount",
        "f9875264973f58f7f316da9624a498bb9c78b2bfaab891893b293e313d2d6765",
        "61aba26f423ea27e3c71f7560aafd8123d06b99467ab81ef6f7e3a42321dcc22",
    ),
]


@pytest.fixture(scope="module")
def schemas() -> EvidenceSchemas:
    return EvidenceSchemas.load(SCHEMAS)


async def registered(tmp_path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every record of the sample registers, as their connectors hand them to the schema."""
    births = population.create(tmp_path / "population.db")
    companies = business.create(tmp_path / "business.db")
    registers = [  # evidence type, database, query, fields, JSON columns, parameter, keys
        ("birth-certificate", births, population.BIRTH_QUERY, population.BIRTH_FIELDS, [],
         "person", [person[0] for person in population.PEOPLE]),
        ("residence-record", births, population.RESIDENCE_QUERY, population.RESIDENCE_FIELDS, [],
         "person", [residence[0] for residence in population.RESIDENCES]),
        ("business-registration", companies, business.REGISTRATION_QUERY,
         business.REGISTRATION_FIELDS, ["board"], "code", [c[0] for c in business.COMPANIES]),
    ]  # fmt: skip
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for evidence_type, database, query, fields, json_columns, parameter, keys in registers:
        connector = SqlConnector(
            url=f"sqlite:///{database}",
            query=query,
            parameters=(parameter,),
            fields=fields,
            json_columns=json_columns,
        )
        try:
            for key in keys:
                asked = ConnectorRequest(service=evidence_type, parameters={parameter: key})
                found[f"{evidence_type} {key}"] = (evidence_type, await connector.fetch(asked))
        finally:
            await connector.close()
    for person, diploma in university.DIPLOMAS.items():
        found[f"diploma {person}"] = ("diploma", diploma)
    return found


def awkward() -> dict[str, tuple[str, dict[str, Any]]]:
    """Typed values, and text that must be escaped, normalised or kept as it is."""
    found = {f"{name} typed": (name, make()) for name, make in EXAMPLES.items()}
    diploma = EXAMPLES["diploma"]()
    found["diploma escaped"] = (
        "diploma",
        diploma
        | {
            "givenName": ' "Mari"\t\\ <Liis> & ]]> \r\n\u00e9\u2028\U0001f600 ',
            "fieldOfStudy": "R&D <and> \"'quotes'\"",
            "honours": "1",
            "awardedOn": " 2004-06-18\n",
        },
    )
    found["birth-certificate spaced"] = (
        "birth-certificate",
        EXAMPLES["birth-certificate"]()
        | {"givenName": " \u00a0Mari\u3000 ", "familyName": "  Tamm\t\tKask  "},
    )
    business_registration = EXAMPLES["business-registration"]()
    business_registration["shareCapital"]["amount"] = "+0002500.5"
    business_registration["registeredOn"] = "2001-05-02"
    found["business-registration text amount"] = ("business-registration", business_registration)
    company = EXAMPLES["business-registration"]()
    company["shareCapital"]["amount"] = 2500
    found["business-registration integer amount"] = ("business-registration", company)
    return found


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_the_bench_answer_is_pinned_in_full(schemas: EvidenceSchemas, tmp_path: Path) -> None:
    evidence_type, evidence = (await registered(tmp_path))["birth-certificate EE38001085718"]
    assert schemas.get(evidence_type).to_json(evidence) == BIRTH_OF_MARI


async def test_every_sample_answer_is_byte_for_byte_as_released(
    schemas: EvidenceSchemas, tmp_path: Path
) -> None:
    documents = await registered(tmp_path) | awkward()
    answers = {
        what: (
            evidence_type,
            digest(schemas.get(evidence_type).to_json(evidence)),
            digest(schemas.get(evidence_type).to_xml(evidence)),
        )
        for what, (evidence_type, evidence) in documents.items()
    }
    assert [(kind, what, json, xml) for what, (kind, json, xml) in answers.items()] == PINNED


@pytest.mark.parametrize(
    "text",
    [
        "Ma\x00ri",
        "Ma\x0bri",
        "Ma\x1fri",
        f"Ma{chr(0xD800)}ri",
        f"Ma{chr(0xDFFF)}ri",
        "Ma\uffferi",
        "Ma\uffff",
    ],
)
def test_characters_xml_cannot_carry_are_refused_where_they_are(
    schemas: EvidenceSchemas, text: str
) -> None:
    schema = schemas.get("diploma")
    for encode in (schema.to_json, schema.to_xml):
        with pytest.raises(InvalidEvidence) as caught:
            encode(EXAMPLES["diploma"]() | {"fieldOfStudy": text})
        assert caught.value.detail == "/Diploma/fieldOfStudy"
        assert "contains characters that XML cannot carry" in caught.value.message


@pytest.mark.parametrize(
    "text", ["\x7f\x85", "\ud7ff", "\ue000", "\ufffd", "\U00010000", "\U0010ffff", "a\tb\nc\rd"]
)
def test_characters_xml_can_carry_are_answered_as_the_document_decodes(
    schemas: EvidenceSchemas, text: str
) -> None:
    schema = schemas.get("diploma")
    evidence = EXAMPLES["diploma"]() | {"fieldOfStudy": f"x{text}y"}
    assert schema.to_json(evidence) == decoded_json(schema, evidence)


def built_element_by_element(schema: EvidenceSchema, evidence: dict[str, Any]) -> bytes:
    """The document as lxml writes a tree built one element at a time (flat string fields)."""
    root = etree.Element(f"{{{schema.namespace}}}{schema.root}", nsmap={None: schema.namespace})
    for name, value in evidence.items():
        if isinstance(value, dict):
            parent = etree.SubElement(root, f"{{{schema.namespace}}}{name}")
            for child, text in value.items():
                etree.SubElement(parent, f"{{{schema.namespace}}}{child}").text = text
        else:
            etree.SubElement(root, f"{{{schema.namespace}}}{name}").text = value
    document: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return document


# Any text XML carries, markup and references included, and names the schema accepts.
xml_text = st.text(
    st.characters(
        codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00\ufffe\uffff"
    ).filter(lambda c: c in "\t\n\r" or c >= " "),
    min_size=1,
    max_size=60,
).filter(lambda text: 0 < len(" ".join(text.replace("\t", " ").split())) <= 100)


@settings(max_examples=200, deadline=None)
@given(given_name=xml_text, field=xml_text)
def test_a_text_is_written_as_lxml_writes_it(
    schemas: EvidenceSchemas, given_name: str, field: str
) -> None:
    """Whatever a text holds (markup, references, "]]>", line ends, other scripts), the answer
    is byte for byte the document lxml writes for it, and decodes back to that text."""
    schema = schemas.get("diploma")
    evidence = university.DIPLOMAS["EE38001085718"] | {
        "givenName": given_name,
        "fieldOfStudy": field,
    }
    document = schema.to_xml(evidence)
    assert document == built_element_by_element(schema, evidence)
    assert schema.to_json(evidence) == decoded_json(schema, evidence)


def test_markup_in_a_text_stays_text(schemas: EvidenceSchemas) -> None:
    schema = schemas.get("diploma")
    forged = "x</fieldOfStudy><honours>true</honours><fieldOfStudy>&amp;<!DOCTYPE a>"
    evidence = university.DIPLOMAS["EE38001085718"] | {"fieldOfStudy": forged}
    document = schema.to_xml(evidence)
    assert b"<honours>" not in document
    assert schema.from_xml(document)["fieldOfStudy"] == forged
    assert "honours" not in json.loads(schema.to_json(evidence))["Diploma"]


def test_an_unqualified_child_is_written_outside_the_namespace(tmp_path: Path) -> None:
    """A schema whose local elements are unqualified (no elementFormDefault): the children are
    written with ``xmlns=""``, so the answer is the document that was validated and reads back
    (a tree built element by element was written with them in the root's namespace)."""
    (tmp_path / "thing.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" '
        'xmlns="urn:t"><xs:element name="A"><xs:complexType><xs:sequence>'
        '<xs:element name="b" type="xs:string"/><xs:element name="c" minOccurs="0">'
        '<xs:complexType><xs:sequence><xs:element name="d" type="xs:integer" minOccurs="0"/>'
        "</xs:sequence></xs:complexType></xs:element>"
        "</xs:sequence></xs:complexType></xs:element></xs:schema>"
    )
    schema = EvidenceSchema.load(tmp_path / "thing.xsd")
    document = schema.to_xml({"b": "x", "c": {}})
    assert document.endswith(b'<A xmlns="urn:t"><b xmlns="">x</b><c xmlns=""/></A>')
    assert schema.from_xml(document) == {"b": "x", "c": {}}
    assert schema.from_xml(schema.to_xml({"b": "x", "c": {"d": 7}})) == {"b": "x", "c": {"d": 7}}
    assert schema.to_json({"b": "x", "c": {"d": 7}}) == b'{"A":{"b":"x","c":{"d":7}}}'
