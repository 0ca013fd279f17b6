"""The official OOTS EDM material for tests, read where CI and developers have it, never copied.

The material (schemas, Schematron rules, samples) lives beside the repository, in
``../shared/oots-edm/`` from the repository's root. Tests that need it call :func:`material`,
which skips them with the reason when it is absent, or fails them when
``EXCHANGE_REQUIRE_OOTS`` is set (CI sets it).

:class:`Rules` checks a document against the EDM business rules. They are Schematron with the
XSLT 2 query binding, which lxml (XSLT 1) cannot run; each rule file is turned here into an
XSLT 3 stylesheet (one mode per pattern, one template per rule, its ``let``\\ s as variables,
an element per failed ``assert`` or fired ``report``) and run by Saxon-HE (``saxonche``),
offline. Only the constructs the EDM rule files use are supported (``ns``, ``pattern``,
``rule``, ``let``, ``assert``, ``report``); anything else fails loudly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT.parent / "shared" / "oots-edm"
EXCHANGE = "samples/evidence-exchange/4.5.4 - OOTS-EDM XML Examples of the Evidence Exchange"
BIRTH_REQUEST = f"{EXCHANGE}/2 Example for requesting a Birth Certificate - natural person"
COMPANY_REQUEST = (
    f"{EXCHANGE}/4 Example for requesting an Extract of a Commercial Register/"
    "4.1 Step 1  Evidence Request  - Tax - full example.xml"
)
SCH = "http://purl.oclc.org/dsdl/schematron"
XSL = "http://www.w3.org/1999/XSL/Transform"


def material() -> Path:
    """The EDM material's folder; skips (or fails, under EXCHANGE_REQUIRE_OOTS) without it."""
    if (FOLDER / "xsd").is_dir():
        return FOLDER
    reason = f"the OOTS EDM material is not at {FOLDER} (see docs/oots.md)"
    if os.environ.get("EXCHANGE_REQUIRE_OOTS"):
        pytest.fail(f"EXCHANGE_REQUIRE_OOTS is set but {reason}")
    pytest.skip(reason)


def available() -> Path | None:
    """The material's folder, or None where it is absent (and not required): for tests that
    run with or without it."""
    if (FOLDER / "xsd").is_dir():
        return FOLDER
    if os.environ.get("EXCHANGE_REQUIRE_OOTS"):
        pytest.fail(f"EXCHANGE_REQUIRE_OOTS is set but the OOTS EDM material is not at {FOLDER}")
    return None


def request_samples() -> list[Path]:
    """Every official full evidence request sample."""
    return sorted(material().glob(f"{EXCHANGE}/*/*Request*full example.xml"))


@dataclass(frozen=True)
class Failure:
    rule: str
    role: str
    where: str


def _compile(path: Path) -> str:
    schema = etree.parse(str(path)).getroot()
    namespaces = {ns.get("prefix"): ns.get("uri") for ns in schema.iter(f"{{{SCH}}}ns")}
    sheet = etree.Element(f"{{{XSL}}}stylesheet", nsmap={**namespaces, "xsl": XSL}, version="3.0")
    start = etree.SubElement(sheet, f"{{{XSL}}}template", match="/")
    found = etree.SubElement(start, "failures")
    patterns = list(schema.iter(f"{{{SCH}}}pattern"))
    for index, pattern in enumerate(patterns):
        mode = f"p{index}"
        etree.SubElement(found, f"{{{XSL}}}apply-templates", select="//(node()|@*)", mode=mode)
        for order, rule in enumerate(pattern.findall(f"{{{SCH}}}rule")):
            # The first rule of a pattern that matches a node is the one that applies.
            template = etree.SubElement(
                sheet,
                f"{{{XSL}}}template",
                match=rule.get("context") or "",
                mode=mode,
                priority=str(1000 - order),
            )
            for check in rule:
                if not isinstance(check.tag, str):
                    continue
                if check.tag == f"{{{SCH}}}let":
                    etree.SubElement(
                        template,
                        f"{{{XSL}}}variable",
                        name=check.get("name"),
                        select=check.get("value"),
                    )
                    continue
                if check.tag == f"{{{SCH}}}assert":
                    test = f"not({check.get('test')})"
                elif check.tag == f"{{{SCH}}}report":
                    test = check.get("test") or ""
                else:
                    raise ValueError(f"{path.name}: {check.tag} is not supported here")
                name = check.get("id") or " ".join((check.text or "").split())[:60]
                # A rule whose own expression fails under XPath 2's typing (R-EDM-ERR-C022
                # compares a slot's text with a number) is reported as broken, not as failed.
                attempt = etree.SubElement(template, f"{{{XSL}}}try")
                fired = etree.SubElement(attempt, f"{{{XSL}}}if", test=test)
                failed = etree.SubElement(
                    fired, "failed", id=name, role=check.get("role") or "error"
                )
                etree.SubElement(failed, f"{{{XSL}}}value-of", select="path()")
                caught = etree.SubElement(attempt, f"{{{XSL}}}catch")
                etree.SubElement(caught, "failed", id=name, role="broken-rule")
        etree.SubElement(sheet, f"{{{XSL}}}template", match="node()|@*", mode=mode, priority="-10")
    result: str = etree.tostring(sheet, encoding="unicode")
    return result


class Rules:
    """The EDM business rules of one kind (``REQ``, ``RESP``, ``ERR``): syntax and content."""

    def __init__(self, kind: str) -> None:
        saxonche = pytest.importorskip("saxonche")
        folder = material() / "sch"
        self._processor = saxonche.PySaxonProcessor(license=False)
        compiler = self._processor.new_xslt30_processor()
        self._sheets = [
            compiler.compile_stylesheet(stylesheet_text=_compile(folder / f"EDM-{kind}-{part}.sch"))
            for part in ("S", "C")
        ]

    def failures(self, document: bytes) -> list[Failure]:
        """Every rule of role ``error`` (the default) that ``document`` breaks; rules that
        cannot be evaluated (``broken-rule``) are left out."""
        node = self._processor.parse_xml(xml_text=document.decode("utf-8"))
        found = []
        for sheet in self._sheets:
            report = etree.fromstring(sheet.transform_to_string(xdm_node=node).encode())
            found += [
                Failure(item.get("id"), item.get("role"), item.text or "")
                for item in report
                if item.get("role") in ("error", "fatal")
            ]
        return found


@cache
def rules(kind: str) -> Rules:
    return Rules(kind)
