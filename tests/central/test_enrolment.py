"""Enrolment with a one-time code, over HTTP: the authority's operator issues a code for a
registered member's gateway; the gateway sends both CSRs with it and gets its two certificates,
once; every other use is refused with a precise X-Road error, and the log names who did what
without ever holding the code."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from cryptography import x509
from sqlalchemy import text

from exchange.central.app import create_app
from exchange.central.service import Central
from exchange.central.settings import CentralSettings
from exchange.errors import InvalidRequest, NotFound
from exchange.identifiers import GatewayId, MemberId
from exchange.trust.keys import build_csr, csr_pem, generate_key
from tests.conftest import Clock
from tests.inprocess import Loopback, LoopThread

URL = "http://127.0.0.1:4401"
MEMBER = MemberId.parse("EE/GOV/70000310")
GATEWAY = GatewayId(MEMBER, "gw1")
ADDRESS = "https://127.0.0.1:8443"
OLGA = "console:olga"


@dataclass
class Served:
    central: Central
    http: httpx.Client

    def enrol(self, code: str, gateway: str = str(GATEWAY), **csrs: str) -> httpx.Response:
        body = {
            "code": code,
            "gateway": gateway,
            "signing_csr": csrs.get("signing_csr") or new_csr(),
            "tls_csr": csrs.get("tls_csr") or new_csr(),
        }
        return self.http.post(f"{URL}/enrolment", json=body)

    def events(self) -> list[tuple[str, str, str, dict[str, object]]]:
        return [
            (e.actor, e.action, e.subject, json.loads(e.details))
            for e in self.central.registry.events(limit=1000)
        ]


def new_csr(key: object = None) -> str:
    return csr_pem(build_csr(key or generate_key(), "asked for, not used"))  # type: ignore[arg-type]


@pytest.fixture
def served(central: Central, central_settings: CentralSettings, clock: Clock) -> Iterator[Served]:
    central.registry.register_member(MEMBER, "Population Register", actor="test")
    app = create_app(central_settings, clock=clock)
    loop = LoopThread("central-enrolment")
    loopback = Loopback()
    loopback.serve(URL, app, loop)
    with httpx.Client(transport=loopback.blocking(), timeout=30) as http:
        yield Served(app.state.central, http)
    loop.stop()


def refused(answer: httpx.Response, status: int, kind: str) -> dict[str, str]:
    assert answer.status_code == status, answer.text
    assert answer.headers["x-road-error"] == f"Client.{kind}"
    body: dict[str, str] = answer.json()
    assert body["type"] == f"Client.{kind}"
    return body


def test_a_code_enrols_its_gateway_once_and_the_log_names_who(served: Served) -> None:
    issued = served.central.enrolments.issue(GATEWAY, ADDRESS, actor=OLGA)
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){5}", issued.code)
    [member] = served.central.registry.members()
    assert [(g.identifier, g.address) for g in member.gateways] == [(str(GATEWAY), ADDRESS)]

    signing_key, tls_key = generate_key(), generate_key()
    typed = issued.code.replace("-", " ").lower()  # as someone may type it
    answer = served.enrol(typed, signing_csr=new_csr(signing_key), tls_csr=new_csr(tls_key))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    signing = x509.load_pem_x509_certificate(body["signing"]["certificate"].encode())
    tls = x509.load_pem_x509_certificate(body["tls"]["certificate"].encode())
    assert signing.public_key() == signing_key.public_key()
    assert tls.public_key() == tls_key.public_key()
    named = x509.NameOID.SERIAL_NUMBER
    assert signing.subject.get_attributes_for_oid(named)[0].value == str(MEMBER)
    assert tls.subject.get_attributes_for_oid(named)[0].value == str(GATEWAY)
    sans = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    again = refused(served.enrol(issued.code), 409, "EnrolmentCodeUsed")
    assert again["message"] == "this enrolment code was used already"
    assert len(served.central.certificates.list()) == 2  # once

    events = served.events()
    actor = f"enrolment:{GATEWAY}"
    assert [(e[0], e[1], e[2]) for e in events[-5:]] == [
        (OLGA, "gateway.registered", str(GATEWAY)),
        (OLGA, "enrolment_code.issued", str(GATEWAY)),
        (actor, "certificate.issued.signing", str(MEMBER)),
        (actor, "certificate.issued.tls", str(GATEWAY)),
        (actor, "gateway.enrolled", str(GATEWAY)),
    ]
    assert events[-1][3]["code_issued_by"] == OLGA
    assert events[-1][3]["signing"] == body["signing"]["serial"]
    # Nothing kept can be used as the code: not the log, not the table.
    letters = issued.code.replace("-", "")
    assert letters not in json.dumps(events)
    with served.central.registry.session() as session:
        stored = session.execute(text("SELECT * FROM ca_enrolment_codes")).all()
    assert letters not in repr(stored)
    [state] = served.central.enrolments.codes()
    assert (state.gateway, state.status, state.issued_by) == (str(GATEWAY), "used", OLGA)


def test_a_retry_whose_answer_was_lost_gets_the_same_certificates_and_nothing_else(
    served: Served, clock: Clock
) -> None:
    """The gateway sent its CSRs, the authority committed, the answer never arrived (a timeout,
    a dropped connection). The gateway keeps its keys and CSRs, so its retry with the same code
    asks for the same two keys: it gets the certificates already issued, not a refusal that
    would leave them installed nowhere and the code spent."""
    issued = served.central.enrolments.issue(GATEWAY, ADDRESS, actor=OLGA)
    signing_csr, tls_csr = new_csr(generate_key()), new_csr(generate_key())
    first = served.enrol(issued.code, signing_csr=signing_csr, tls_csr=tls_csr)
    assert first.status_code == 201, first.text

    clock.advance(timedelta(seconds=40))
    again = served.enrol(issued.code, signing_csr=signing_csr, tls_csr=tls_csr)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert len(served.central.certificates.list()) == 2  # nothing new issued
    actor, action, subject, details = served.events()[-1]
    assert (actor, action, subject) == (
        f"enrolment:{GATEWAY}",
        "gateway.enrolment_repeated",
        str(GATEWAY),
    )
    assert details["signing"] == first.json()["signing"]["serial"]

    # Any other key, swapped keys, or another gateway: the code is used.
    refused(served.enrol(issued.code, signing_csr=signing_csr), 409, "EnrolmentCodeUsed")
    refused(
        served.enrol(issued.code, signing_csr=tls_csr, tls_csr=signing_csr),
        409,
        "EnrolmentCodeUsed",
    )
    refused(
        served.enrol(
            issued.code, gateway=f"{MEMBER}/gw2", signing_csr=signing_csr, tls_csr=tls_csr
        ),
        409,
        "EnrolmentCodeUsed",
    )
    # A certificate of the pair revoked since: not handed out again.
    served.central.certificates.revoke(first.json()["tls"]["serial"], "keyCompromise", actor=OLGA)
    refused(
        served.enrol(issued.code, signing_csr=signing_csr, tls_csr=tls_csr),
        409,
        "EnrolmentCodeUsed",
    )


def test_a_repeated_enrolment_is_answered_only_while_the_code_would_have_been_valid(
    served: Served, clock: Clock
) -> None:
    issued = served.central.enrolments.issue(GATEWAY, ADDRESS, actor=OLGA)
    signing_csr, tls_csr = new_csr(generate_key()), new_csr(generate_key())
    assert served.enrol(issued.code, signing_csr=signing_csr, tls_csr=tls_csr).status_code == 201
    clock.advance(served.central.settings.enrolment_code_validity + timedelta(seconds=1))
    refused(
        served.enrol(issued.code, signing_csr=signing_csr, tls_csr=tls_csr),
        409,
        "EnrolmentCodeUsed",
    )


def test_unknown_foreign_expired_and_replaced_codes_are_refused(
    served: Served, clock: Clock
) -> None:
    refused(served.enrol("AAAA-BBBB-CCCC-DDDD-EEEE-FFFF"), 401, "InvalidEnrolmentCode")

    first = served.central.enrolments.issue(GATEWAY, ADDRESS, actor=OLGA)
    other = refused(served.enrol(first.code, gateway=f"{MEMBER}/gw2"), 403, "AccessDenied")
    assert other["detail"] == str(GATEWAY)
    # A broken or doubled request leaves the code as it was: it still works afterwards.
    refused(served.enrol(first.code, signing_csr="not a CSR"), 400, "InvalidCertificateRequest")
    same = new_csr(key := generate_key())
    refused(served.enrol(first.code, signing_csr=same, tls_csr=new_csr(key)), 400, "InvalidRequest")
    too_big = served.http.post(f"{URL}/enrolment", content=b"{" + b" " * 40_000 + b"}")
    refused(too_big, 413, "PayloadTooLarge")
    refused(served.http.post(f"{URL}/enrolment", content=b"[]"), 400, "InvalidRequest")

    second = served.central.enrolments.issue(GATEWAY, ADDRESS, actor=OLGA)
    withdrawn = refused(served.enrol(first.code), 401, "InvalidEnrolmentCode")
    assert withdrawn["detail"] == "withdrawn"
    assert served.events()[-1][3]["withdrawn"] == 1

    clock.advance(served.central.settings.enrolment_code_validity + timedelta(seconds=1))
    expired = refused(served.enrol(second.code), 401, "EnrolmentCodeExpired")
    assert "expired" in expired["message"]
    assert [s.status for s in served.central.enrolments.codes()] == ["expired", "withdrawn"]
    assert served.central.certificates.list() == []


def test_a_code_is_only_for_a_registered_member_at_the_registered_address(
    served: Served,
) -> None:
    with pytest.raises(NotFound):
        served.central.enrolments.issue(GatewayId.parse("EE/GOV/1/gw1"), ADDRESS, actor=OLGA)
    with pytest.raises(InvalidRequest, match="https://host"):
        served.central.enrolments.issue(GATEWAY, "http://127.0.0.1:8443", actor=OLGA)
    served.central.enrolments.issue(GATEWAY, ADDRESS, actor=OLGA)
    with pytest.raises(InvalidRequest, match="is registered at"):
        served.central.enrolments.issue(GATEWAY, "https://127.0.0.2:8443", actor=OLGA)
