"""The official OOTS EDM material for tests, read where CI and developers have it, never copied.

The material (schemas, Schematron rules, samples) lives beside the repository, in
``../shared/oots-edm/`` from the repository's root. Tests that need it call :func:`material`,
which skips them with the reason when it is absent, or fails them when
``EXCHANGE_REQUIRE_OOTS`` is set (CI sets it).

:class:`Rules` checks a document against the EDM business rules, compiled as the gateways
compile them (:mod:`exchange.evidence.edm.rules`: Schematron turned into XSLT 3, run by Saxon-HE,
offline).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest
from lxml import etree

from exchange.evidence.edm.rules import BusinessRules, Failure

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT.parent / "shared" / "oots-edm"
EXCHANGE = "samples/evidence-exchange/4.5.4 - OOTS-EDM XML Examples of the Evidence Exchange"
BIRTH_REQUEST = f"{EXCHANGE}/2 Example for requesting a Birth Certificate - natural person"
SNIPPETS = "samples/evidence-exchange/Snippets"
COMPANY_REQUEST = (
    f"{EXCHANGE}/4 Example for requesting an Extract of a Commercial Register/"
    "4.1 Step 1  Evidence Request  - Tax - full example.xml"
)


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


def response_samples() -> list[Path]:
    """Every official full evidence response and error response sample."""
    return sorted(material().glob(f"{EXCHANGE}/*/*Response*full example.xml"))


def snippet(name: str) -> Path:
    """One of the official syntax mapping snippets (``<folder>/<file>``)."""
    return material() / SNIPPETS / name


class Rules:
    """The EDM business rules of one kind (``REQ``, ``RESP``, ``ERR``), as the gateways run them
    (:class:`exchange.evidence.edm.rules.BusinessRules`), for documents as bytes."""

    def __init__(self, kind: str) -> None:
        self._rules = BusinessRules(kind, material())

    def failures(self, document: bytes) -> list[Failure]:
        """Every rule of role ``error`` (the default) that ``document`` breaks; rules that
        cannot be evaluated (``broken-rule``) are left out."""
        return self._rules.failures(etree.fromstring(document))


@cache
def rules(kind: str) -> Rules:
    return Rules(kind)
