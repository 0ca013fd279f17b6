"""The demo's OOTS EDM walkthrough (docs/oots.md): its EDM services and the requests to post.

With the official EDM material (``exchange demo --oots-edm FOLDER``), the Population Register
offers the birth certificate in EDM under the person's consent with preview, and the Business
Register a company extract about legal persons as public data; both providers are placed in
Estonia, so the central authority's Data Service Directory lists them.

The requests are made at the demo's first run from the official samples in that folder (the
project ships none of them): the birth certificate request is pointed at Mari Tamm of the
population register, the commercial register request at Tamm & Kask OÜ of the business register
(Mari Tamm, its chair, as its representative), both at the demo's own evidence types and
members. Each is checked against the EDM schemas before it is written.
"""

from __future__ import annotations

import json
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from lxml import etree

from exchange.evidence.edm import NS
from exchange.evidence.edm.directory import QUERY_ID
from exchange.evidence.edm.schemaset import EdmSchemas
from exchange.sample import business, population

# The demo's own evidence types (the official samples' are German ones).
BIRTH_CLASSIFICATION = (
    "https://sr.oots.tech.europa.eu/evidencetypeclassifications/EE/"
    "8f0b3c1e-5d2a-4e7b-9c61-2b7d4f3a9e10"
)
COMPANY_CLASSIFICATION = (
    "https://sr.oots.tech.europa.eu/evidencetypeclassifications/EE/"
    "3c9e6a24-7b15-4d8f-a0e2-6f1d8b5c7a43"
)
BIRTH_MODEL = "https://sr.oots.tech.europa.eu/distributions/certificate-of-birth-1.0.0"
COMPANY_MODEL = "https://sr.oots.tech.europa.eu/distributions/BRIS-1.0.0"
BIRTH_CODE = "birth-certificate-oots"
COMPANY_CODE = "company-extract-oots"
EAS_ESTONIA = "urn:cef.eu:names:identifier:EAS:0191"  # Estonian register codes
MARI = population.PEOPLE[0]
COMPANY = business.COMPANIES[0]  # Tamm & Kask OÜ, Mari Tamm its chair
PURPOSE = "oots:R1"  # the birth certificate sample's procedure
EXCHANGE = "samples/evidence-exchange/4.5.4 - OOTS-EDM XML Examples of the Evidence Exchange"
BIRTH_SAMPLE = (
    f"{EXCHANGE}/2 Example for requesting a Birth Certificate - natural person/"
    "2.1 Step 1  Evidence Request - Birth - full example.xml"
)
COMPANY_SAMPLE = (
    f"{EXCHANGE}/4 Example for requesting an Extract of a Commercial Register/"
    "4.1 Step 1  Evidence Request  - Tax - full example.xml"
)
PREVIEW_PLACEHOLDER = "PREVIEW_LOCATION"


# EDM-REQ rules the demo's requests cannot meet, waived as an operator would (and logged at
# start): its preview pages are plain http on loopback (C005 wants https), and an Estonian
# registry code has 8 digits where C050 wants at least 9 characters.
WAIVED = ("R-EDM-REQ-C005", "R-EDM-REQ-C050")


def _toml(value: object) -> str:
    return json.dumps(value)  # JSON strings and lists are valid TOML values


def profile(folder: Path, *, member: str | None = None, name: str | None = None) -> str:
    """A gateway's ``[edm]`` settings: the material, and the provider as EDM names it (in
    Estonia, for the directory) where the gateway provides EDM services."""
    block = f"\n[edm]\nfolder = {_toml(str(folder))}\nwaived_rules = {_toml(list(WAIVED))}\n"
    if member is not None and name is not None:
        block += (
            f"[edm.provider]\nid = {_toml(member)}\nscheme = {_toml(EAS_ESTONIA)}\n"
            f'name = {_toml(name)}\ncountry = "EE"\n'
        )
    return block


def population_services(registry: Path) -> str:
    """The birth certificate in EDM: the person's consent, seen before it is sent."""
    return (
        "\n[[services]]\n"
        f'subsystem = "population-registry"\ncode = "{BIRTH_CODE}"\n'
        'evidence_type = "birth-certificate"\n'
        'description = "birth certificate in OOTS EDM, with preview"\n'
        'consent_policy = "consent"\npreview = true\nmethods = ["POST"]\n'
        'parameters = ["person"]\n'
        "[services.connector]\n"
        f'type = "sql"\nurl = {_toml(f"sqlite:///{registry}")}\n'
        f"query = {_toml(population.BIRTH_QUERY)}\n"
        "[services.connector.fields]\n"
        + "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in population.BIRTH_FIELDS.items())
        + "[services.edm]\n"
        f"evidence_type_classification = {_toml(BIRTH_CLASSIFICATION)}\n"
        f'conforms_to = {_toml(BIRTH_MODEL)}\nissued_field = "registeredOn"\n'
        '[services.edm.titles]\nEN = "Certificate of Birth"\nET = "Sünnitõend"\n'
    )


def business_services(register: Path, *, documents: str) -> str:
    """A company's extract in EDM, about legal persons: public data; as XML, or as the PDF
    the register's document store at ``documents`` serves (:mod:`exchange.sample.documents`)."""
    return (
        "\n[[services]]\n"
        f'subsystem = "business-registry"\ncode = "{COMPANY_CODE}"\n'
        'evidence_type = "business-registration"\n'
        'description = "company extract in OOTS EDM"\n'
        'consent_policy = "public"\nmethods = ["POST"]\nparameters = ["code"]\n'
        'subject_parameter = ""\n'  # a company, not a person
        "[services.connector]\n"
        f'type = "sql"\nurl = {_toml(f"sqlite:///{register}")}\n'
        f"query = {_toml(business.REGISTRATION_QUERY)}\n"
        'json_columns = ["board"]\n'
        "[services.connector.fields]\n"
        + "".join(f"{_toml(k)} = {_toml(v)}\n" for k, v in business.REGISTRATION_FIELDS.items())
        + "[services.edm]\n"
        'about = "legal-person"\nlegal_person_parameter = "code"\n'
        f"evidence_type_classification = {_toml(COMPANY_CLASSIFICATION)}\n"
        f'conforms_to = {_toml(COMPANY_MODEL)}\nissued_field = "registeredOn"\n'
        '[services.edm.titles]\nEN = "Extract of the Commercial Register"\n'
        'ET = "Äriregistri väljavõte"\n'
        "[services.edm.document]\n"
        f"url = {_toml(documents + '/extracts/{code}.pdf')}\n"
    )


@dataclass(frozen=True)
class Parties:
    """Who asks and who answers, as EDM names them."""

    requester: tuple[str, str]  # member code, name
    population: tuple[str, str]
    business: tuple[str, str]


def _one(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path, NS)
    if found is None:
        raise ValueError(f"the official sample has no {path}: not the EDM v1.0 material")
    return found


def _agent(root: etree._Element, slot: str, party: tuple[str, str]) -> None:
    agent = _one(root, f"rim:Slot[@name='{slot}']//sdg:Agent")
    for child in list(agent):
        if child.tag != f"{{{NS['sdg']}}}Classification":
            agent.remove(child)
    identifier = etree.Element(f"{{{NS['sdg']}}}Identifier", schemeID=EAS_ESTONIA)
    identifier.text = party[0]
    named = etree.Element(f"{{{NS['sdg']}}}Name", lang="EN")
    named.text = party[1]
    agent.insert(0, named)
    agent.insert(0, identifier)


def _keep_only(element: etree._Element, names: tuple[str, ...]) -> None:
    for child in list(element):
        if not isinstance(child.tag, str) or etree.QName(child).localname not in names:
            element.remove(child)


def _as_mari(person: etree._Element) -> None:
    code, given, family, born, *_ = MARI
    _keep_only(person, ("LevelOfAssurance", "Identifier", "FamilyName", "GivenName", "DateOfBirth"))
    for name, value in (
        ("Identifier", f"{code[:2]}/{code[:2]}/{code[2:]}"),  # the eIDAS form of EE38001085718
        ("FamilyName", family),
        ("GivenName", given),
        ("DateOfBirth", born),
    ):
        _one(person, f"sdg:{name}").text = value


def _wanted(root: etree._Element, classification: str, model: str) -> None:
    wanted = _one(root, ".//rim:Slot[@name='EvidenceRequest']//sdg:DataServiceEvidenceType")
    _one(wanted, "sdg:EvidenceTypeClassification").text = classification
    _keep_only(wanted, ("Identifier", "EvidenceTypeClassification", "Title", "DistributedAs"))
    for distributed in wanted.findall("sdg:DistributedAs", NS):
        _keep_only(distributed, ("Format", "ConformsTo"))  # the full evidence, no subset
        _one(distributed, "sdg:ConformsTo").text = model


def _boolean(root: etree._Element, slot: str, value: str) -> None:
    _one(root, f"rim:Slot[@name='{slot}']//rim:Value").text = value


def _written(schemas: EdmSchemas, root: etree._Element, path: Path) -> Path:
    root.set("id", f"urn:uuid:{uuid.uuid4()}")
    document = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    schemas.parse(document, what=path.name)  # the demo writes only what its gateway accepts
    path.write_bytes(document)
    return path


def write_requests(folder: Path, material: Path, parties: Parties) -> None:
    """The walkthrough's requests in ``folder``, made from the official samples."""
    schemas = EdmSchemas.load(material)
    folder.mkdir(parents=True, exist_ok=True)

    birth = etree.parse(str(material / BIRTH_SAMPLE)).getroot()
    _agent(birth, "EvidenceRequester", parties.requester)
    _agent(birth, "EvidenceProvider", parties.population)
    _as_mari(_one(birth, ".//rim:Slot[@name='NaturalPerson']//sdg:Person"))
    _wanted(birth, BIRTH_CLASSIFICATION, BIRTH_MODEL)
    _boolean(birth, "PossibilityForPreview", "true")
    _written(schemas, birth, folder / "birth-request.xml")
    # The second request returns to the preview the citizen approved (its address, once known).
    slot = etree.Element(f"{{{NS['rim']}}}Slot", name="PreviewLocation")
    value = etree.SubElement(
        slot, f"{{{NS['rim']}}}SlotValue", {f"{{{NS['xsi']}}}type": "rim:StringValueType"}
    )
    etree.SubElement(value, f"{{{NS['rim']}}}Value").text = f"http://{PREVIEW_PLACEHOLDER}"
    _one(birth, "rim:Slot[@name='Procedure']").addnext(slot)
    _written(schemas, birth, folder / "birth-request-previewed.xml")

    company = etree.parse(str(material / COMPANY_SAMPLE)).getroot()
    _agent(company, "EvidenceRequester", parties.requester)
    _agent(company, "EvidenceProvider", parties.business)
    legal = _one(company, ".//rim:Slot[@name='LegalPerson']//sdg:LegalPerson")
    _keep_only(legal, ("LevelOfAssurance", "LegalPersonIdentifier", "LegalName"))
    _one(legal, "sdg:LegalPersonIdentifier").text = f"EE/EE/{COMPANY[0]}"
    _one(legal, "sdg:LegalName").text = COMPANY[1]
    _as_mari(_one(company, ".//rim:Slot[@name='AuthorizedRepresentative']//sdg:Person"))
    _wanted(company, COMPANY_CLASSIFICATION, COMPANY_MODEL)
    _written(schemas, company, folder / "company-request.xml")
    # The same, asking for the PDF distribution (a PDF conforms to no data model).
    for distributed in company.iterfind(".//sdg:DistributedAs", NS):
        _one(distributed, "sdg:Format").text = "application/pdf"
        _keep_only(distributed, ("Format",))
    _written(schemas, company, folder / "company-request-pdf.xml")


def birth_script(
    folder: Path,
    *,
    service_url: str,
    client: str,
    idp_url: str,
    consent_url: str,
    consent_client: str,
    service: str,
) -> Path:
    """``birth.sh`` in ``folder``: Mari Tamm's consent (granted once, through the consent
    service's API, as her own program would), then the EDM request; with the address of the
    preview she approved, the request that returns to it."""
    code = MARI[0]
    grant = json.dumps(
        {
            "consumer": client,
            "service": service,
            "purpose": PURPOSE,
            "purpose_text": "to show the OOTS EDM walkthrough of the demo",
            "preview": True,
            "max_uses": 10,
        }
    )
    callback = f"{consent_url}/callback"
    q = shlex.quote
    script = f"""#!/bin/sh
# The demo's OOTS EDM birth certificate (docs/oots.md). First run: the answer is PreviewRequired
# with the preview page; open it, sign in as Mari Tamm and approve; then run again with that
# page's address as the only argument, to receive exactly the evidence she approved.
set -eu
umask 077  # the consent artefact names the person: for this user's eyes only
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -s "$here/consent.jws" ]; then
  # Mari Tamm signs in at the demo's identity provider and grants the consent.
  location=$(curl -s -o /dev/null -w '%{{redirect_url}}' -d client_id={q(consent_client)} \\
    -d redirect_uri={q(callback)} -d state=walkthrough -d citizen={q(code)} \\
    {q(idp_url + "/authorize")})
  grant=${{location#*code=}}
  grant=${{grant%%&*}}
  token=$(curl -s -d grant_type=authorization_code -d code="$grant" \\
    -d client_id={q(consent_client)} -d redirect_uri={q(callback)} {q(idp_url + "/token")} \\
    | sed -n 's/.*"id_token": *"\\([^"]*\\)".*/\\1/p')
  curl -s -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \\
    -d {q(grant)} {q(consent_url + "/api/v1/consents")} \\
    | sed -n 's/.*"artefact": *"\\([^"]*\\)".*/\\1/p' > "$here/consent.jws"
fi
body="$here/birth-request.xml"
if [ $# -gt 0 ]; then
  sed "s|http://{PREVIEW_PLACEHOLDER}|$1|" "$here/birth-request-previewed.xml" \\
    > "$here/birth-request-sent.xml"
  body="$here/birth-request-sent.xml"
fi
curl -s -w '\\nHTTP %{{http_code}}\\n' -H {q("X-Road-Client: " + client)} \\
  -H {q("X-Road-UserId: " + code)} -H "X-Exchange-Consent: $(cat "$here/consent.jws")" \\
  -H 'Content-Type: application/x-ebrs+xml' --data-binary @"$body" {q(service_url)} \\
  | tee "$here/birth-answer.txt"
if [ $# -eq 0 ]; then
  page=$(grep -o 'http://[^<]*/preview/[^<]*' "$here/birth-answer.txt" | head -n 1 || true)
  if [ -n "$page" ]; then
    echo "Open $page, sign in as Mari Tamm and approve; then: sh $0 $page"
  fi
fi
"""
    path = folder / "birth.sh"
    path.write_text(script)
    path.chmod(0o755)
    return path


def directory_query(central_url: str) -> str:
    """The Data Service Directory's address for the demo's birth certificate in Estonia."""
    query = urlencode(
        {
            "queryId": QUERY_ID,
            "evidence-type-classification": BIRTH_CLASSIFICATION,
            "country-code": "EE",
        }
    )
    return f"{central_url}/dsd/rest/search?{query}"
