"""The EDM business rules as the gateways run them: compiled once from the operator's folder,
never reading anything else, naming the rule a document breaks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lxml import etree

from exchange.evidence.edm import NS
from exchange.evidence.edm.rules import BrokenRule, BusinessRules
from exchange.evidence.edm.schemaset import EdmProfileError, EdmSchemas
from tests.oots import material, request_samples


@pytest.fixture(scope="module")
def requests() -> BusinessRules:
    return BusinessRules("REQ", material())


def sample(name: str) -> etree._Element:
    (path,) = [path for path in request_samples() if name in path.name]
    return EdmSchemas.load(material()).parse(path.read_bytes(), what=path.name)


def test_the_official_birth_request_keeps_every_rule(requests: BusinessRules) -> None:
    assert requests.failures(sample("Birth")) == []
    requests.check(sample("Birth"), what="the request")


def test_the_official_company_request_breaks_its_country_code_list(
    requests: BusinessRules,
) -> None:
    # The sample writes Greece as GR; the rule's code list (CountryIdentificationCode 2.3, as
    # the EU writes it) has EL.
    company = sample("Tax")
    (failure,) = requests.failures(company)
    assert failure.rule == "R-EDM-REQ-C067"
    assert failure.where.endswith(
        "}CurrentAddress[1]/Q{http://data.europa.eu/p4s}AdminUnitLevel1[1]"
    )
    greece = company.find(".//sdg:CurrentAddress/sdg:AdminUnitLevel1", NS)
    assert greece is not None
    greece.text = "EL"
    assert requests.failures(company) == []


def test_a_broken_rule_is_named_without_quoting_the_document(requests: BusinessRules) -> None:
    request = sample("Birth")
    person = request.find(".//sdg:Person/sdg:Identifier", NS)
    assert person is not None
    person.text = "Smith-123"
    with pytest.raises(BrokenRule) as refused:
        requests.check(request, what="the request")
    assert refused.value.detail == "R-EDM-REQ-C039"
    assert refused.value.message.startswith(
        "the request breaks the EDM business rule R-EDM-REQ-C039"
    )
    assert "Smith-123" not in refused.value.message
    assert refused.value.status == 400


def test_a_waived_rule_is_not_enforced() -> None:
    request = sample("Tax")
    waiving = BusinessRules("REQ", material(), waived=frozenset({"R-EDM-REQ-C067"}))
    assert waiving.failures(request) == []
    with pytest.raises(EdmProfileError, match="no EDM business rule R-EDM-REQ-C999 to waive"):
        BusinessRules("REQ", material(), waived=frozenset({"R-EDM-REQ-C999"}))


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "oots-edm"
    shutil.copytree(material() / "sch", copy / "sch")
    return copy


def test_a_rule_that_reads_another_document_refuses_to_load(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    rules = copy / "sch" / "EDM-REQ-C.sch"
    text = rules.read_text()
    old = """test="rim:Value='oots-edm:v1.0'\""""
    assert old in text
    rules.write_text(text.replace(old, """test="doc('http://127.0.0.1:9/x')\" """, 1))
    with pytest.raises(EdmProfileError, match="reads another document"):
        BusinessRules("REQ", copy)


def test_without_the_rules_the_profile_says_where_to_get_them(tmp_path: Path) -> None:
    copy = _copy(tmp_path)
    (copy / "sch" / "EDM-REQ-S.sch").unlink()
    with pytest.raises(EdmProfileError, match=r"lacks sch/EDM-REQ-S\.sch.*docs/oots\.md"):
        BusinessRules("REQ", copy)
