"""The central console, in process: an agency applies through the public API; the authority's
staff sign in at the identity provider with the roles their role claim names; every route
refuses who is not signed in and whose roles lack its right; operators approve and reject
applications and revoke certificates, each change in the change log with its actor; the
configuration page shows what changed between two versions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from exchange.central import files
from exchange.central.app import create_app
from exchange.central.console.app import PUBLIC, RIGHTS, ROUTES, create_console_app
from exchange.central.service import Central, build
from exchange.central.settings import CentralSettings
from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.identifiers import MemberId
from exchange.identity.login import OidcLogin
from exchange.idp.app import create_app as create_idp_app
from exchange.idp.provider import IdentityProvider, Staff
from exchange.sample.federation import STAFF
from exchange.trust.keys import build_csr, csr_pem, generate_key
from tests.browser import Browser, hidden_fields
from tests.conftest import Clock
from tests.inprocess import Loopback, LoopThread

CENTRAL = "http://127.0.0.1:4411"
IDP = "http://127.0.0.1:4412"
CONSOLE = f"{CENTRAL}/console"
CLIENT = "central-console"
ROLE_OF = {s.username: s.roles[0] for s in STAFF}


@dataclass
class Authority:
    central: Central
    idp: IdentityProvider
    loopback: Loopback

    def http(self) -> httpx.Client:
        return httpx.Client(transport=self.loopback.blocking(), timeout=30)

    def signed_in(self, username: str) -> Browser:
        browser = Browser(self.loopback.blocking())
        page = browser.get(f"{CONSOLE}/")
        assert 'name="staff"' in page.text, page.text[:2000]
        home = browser.submit(page, f'value="{username}"', staff=username)
        assert home.status_code == 200, home.text[:2000]
        assert str(home.url) == f"{CONSOLE}/"
        return browser

    def events(self) -> list[tuple[str, str, str, dict[str, object]]]:
        return [
            (e.actor, e.action, e.subject, json.loads(e.details))
            for e in self.central.registry.events(limit=1000)
        ]


@pytest.fixture
def authority(tmp_path: Path, database_url: str, clock: Clock) -> Iterator[Authority]:
    clock.at = datetime.now(UTC).replace(microsecond=0)
    settings = CentralSettings(
        data_dir=tmp_path / "central",
        database_url=database_url,
        port=4411,
        console={
            "enabled": True,
            "public_url": CENTRAL,
            "issuer": IDP,
            "jwks_url": f"{IDP}/jwks",
            "client_id": CLIENT,
        },
    )
    files.initialise(settings, instance="EE", at=clock.at)
    migrate.upgrade("central", build_engine(settings.db_url))
    build(settings, clock=clock).registry.seed_member_classes(actor="test")
    idp = IdentityProvider(
        issuer=IDP,
        key=ec.generate_private_key(ec.SECP256R1()),
        clients={CLIENT: [f"{CONSOLE}/callback"]},
        citizens=[],
        clock=clock,
        staff=[*STAFF, Staff("nemo", "Nemo Nobody", ("cook",))],
    )
    loop = LoopThread("central-console")
    loopback = Loopback()
    login = OidcLogin(
        issuer=IDP,
        client_id=CLIENT,
        redirect_uri=f"{CONSOLE}/callback",
        transport=loopback.asynchronous(),
        keys_transport=loopback.blocking(),
    )
    app = create_app(settings, clock=clock, console_login=login)
    loopback.serve(CENTRAL, app, loop)
    loopback.serve(IDP, create_idp_app(idp), loop)
    yield Authority(app.state.central, idp, loopback)
    loop.stop()


def test_every_route_refuses_the_unknown_and_roles_without_its_right(
    authority: Authority,
) -> None:
    unused = OidcLogin(issuer="http://unused", client_id="x", redirect_uri="http://unused")
    app = create_console_app(authority.central, login=unused)
    served = {
        (method, route.path)
        for route in app.app.routes  # type: ignore[attr-defined]
        for method in route.methods - {"HEAD"}
    }
    assert served == {(g.method, g.path) for g in ROUTES} | set(PUBLIC)

    anonymous = authority.http()
    for guard in ROUTES:
        answer = anonymous.request(guard.method, CONSOLE + guard.path)
        assert answer.status_code == 303, guard
        assert answer.headers["location"].startswith("/console/login?then=/console"), guard
        assert answer.headers["x-frame-options"] == "DENY", guard
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], guard

    for username, role in ROLE_OF.items():
        browser = authority.signed_in(username)
        token = hidden_fields(browser.get(f"{CONSOLE}/").text)["csrf"]
        for guard in ROUTES:
            if guard.method == "POST":  # every form needs the session's CSRF token
                forged = browser.http.post(CONSOLE + guard.path, data={"csrf": "forged"})
                assert forged.status_code == 403, (username, guard)
            answer = browser.http.request(guard.method, CONSOLE + guard.path, data={"csrf": token})
            allowed = guard.right in RIGHTS[role]
            assert (answer.status_code == 403) != allowed, (username, guard, answer.status_code)
            assert answer.headers["x-frame-options"] == "DENY"
        browser.close()

    # A sign-in whose role claim names no console role opens nothing.
    browser = Browser(authority.loopback.blocking())
    page = browser.get(f"{CONSOLE}/")
    assert browser.submit(page, 'value="nemo"', staff="nemo").status_code == 403


def apply(authority: Authority, **body: str) -> httpx.Response:
    return authority.http().post(f"{CENTRAL}/applications", json=body)


def rows(page: httpx.Response, table: str) -> list[str]:
    body = page.text.split(f'id="{table}"')[1].split("</table>")[0]
    return [unescape(re.sub(r"<[^>]+>", " ", row)) for row in body.split("<tr")[2:]]


def test_an_operator_approves_and_rejects_applications_and_the_log_names_them(
    authority: Authority,
) -> None:
    member = apply(authority, kind="member", id="EE/GOV/70000310", name="Population Register")
    assert member.status_code == 201, member.text
    assert member.json()["status"] == "pending"
    number = member.json()["id"]
    assert authority.central.registry.members() == []  # nothing registered before a decision
    other = apply(authority, kind="member", id="EE/COM/123", name="Shady Ltd", contact="x@y.z")
    assert other.status_code == 201
    # Validated as a registration would be; the same identifier cannot wait twice.
    assert apply(authority, kind="member", id="EE/XYZ/1", name="X").status_code == 400
    assert apply(authority, kind="member", id="EE/GOV/1", name="a\nb").status_code == 400
    assert apply(authority, kind="member", id="EE/GOV/70000310", name="Again").status_code == 409
    assert apply(authority, kind="subsystem", id="EE/GOV/70000310/x").status_code == 404
    assert (
        authority.http()
        .post(f"{CENTRAL}/applications", content=b"{" + b" " * 5000 + b"}")
        .status_code
        == 413
    )

    vera = authority.signed_in("vera")
    assert "Approve" not in vera.get(f"{CONSOLE}/").text  # a viewer sees no decision forms
    olga = authority.signed_in("olga")
    home = olga.get(f"{CONSOLE}/")
    assert "Population Register" in home.text
    forged = olga.post(
        f"{CONSOLE}/applications/approve", {"csrf": "forged", "application": str(number)}
    )
    assert forged.status_code == 403
    approved = olga.submit(home, f'name="application" value="{number}"><button')
    assert 'id="done"' in approved.text
    assert [m.identifier for m in authority.central.registry.members()] == ["EE/GOV/70000310"]
    again = olga.submit(home, f'name="application" value="{number}"><button')
    assert again.status_code == 409  # decided once

    no_reason = olga.submit(approved, 'name="reason"', reason=" ")
    assert no_reason.status_code == 400
    rejected = olga.submit(approved, 'name="reason"', reason="not a public body")
    assert 'id="done"' in rejected.text
    decided = rows(rejected, "decided")
    assert "rejected" in decided[0]
    assert "not a public body" in decided[0]
    assert "console:olga" in decided[0]
    holder = {"authorization": f"Receipt {member.json()['receipt']}"}
    stands = authority.http().get(f"{CENTRAL}/applications/{number}", headers=holder)
    assert stands.json()["status"] == "approved"

    # The member, approved, may now apply for a subsystem; approving it registers it too.
    sub = apply(authority, kind="subsystem", id="EE/GOV/70000310/population-registry")
    assert sub.status_code == 201
    page = olga.get(f"{CONSOLE}/")
    olga.submit(page, f'name="application" value="{sub.json()["id"]}"><button')
    [registered] = authority.central.registry.members()
    assert [s.identifier for s in registered.subsystems] == ["EE/GOV/70000310/population-registry"]
    members = olga.get(f"{CONSOLE}/members")
    assert "EE/GOV/70000310/population-registry" in members.text

    events = authority.events()
    assert events[1][:3] == ("applicant", "application.submitted", "EE/GOV/70000310")
    decisions = [e for e in events if e[0] == "console:olga"]
    assert [(e[1], e[2]) for e in decisions] == [
        ("member.registered", "EE/GOV/70000310"),
        ("application.approved", "EE/GOV/70000310"),
        ("application.rejected", "EE/COM/123"),
        ("subsystem.registered", "EE/GOV/70000310/population-registry"),
        ("application.approved", "EE/GOV/70000310/population-registry"),
    ]
    assert decisions[2][3]["reason"] == "not a public body"
    log = rows(olga.get(f"{CONSOLE}/changes"), "changes")
    assert "application.approved" in log[0]
    assert "console:olga" in log[0]
    olga.close()
    vera.close()


def test_an_operator_revokes_a_certificate_with_a_reason_and_versions_show_it(
    authority: Authority,
) -> None:
    central = authority.central
    member = MemberId.parse("EE/GOV/70000310")
    central.registry.register_member(member, "Population Register", actor="test")
    first = central.publisher.document()
    issued = central.certificates.issue_signing(
        member, csr_pem(build_csr(generate_key(), "x")), actor="test"
    )

    olga = authority.signed_in("olga")
    page = olga.get(f"{CONSOLE}/certificates")
    assert f'data-serial="{issued.serial}" data-status="valid"' in page.text
    revoked = olga.submit(page, f'value="{issued.serial}"', reason="keyCompromise")
    assert f'data-serial="{issued.serial}" data-status="revoked"' in revoked.text
    [row] = central.certificates.list()
    assert row.revocation_reason == "keyCompromise"
    assert authority.events()[-1][:3] == ("console:olga", "certificate.revoked", issued.serial)

    second = central.publisher.document()
    assert second != first
    versions = olga.get(f"{CONSOLE}/configuration")
    assert 'name="from" value="1"' in versions.text
    diff = olga.get(f"{CONSOLE}/configuration?from=1&to=2")
    shown = unescape(diff.text.split('id="diff"')[1].split("</pre>")[0])
    assert '-  "version": 1\n+  "version": 2' in shown
    added = [line for line in shown.splitlines() if line.startswith("+")]
    assert any(issued.serial.lower() in line.lower() for line in added)  # the CRL's news
    trust = olga.get(f"{CONSOLE}/trust-services")
    assert trust.status_code == 200
    olga.close()


def test_the_console_is_refused_on_a_public_address_unless_allowed(tmp_path: Path) -> None:
    console = {
        "enabled": True,
        "public_url": "https://ca.example.org",
        "issuer": "https://login.example.org",
        "jwks_url": "https://login.example.org/jwks",
        "client_id": "central-console",
    }
    base = {"data_dir": tmp_path, "port": 4400}
    assert not CentralSettings(**base, host="0.0.0.0").console.enabled  # noqa: S104 - off
    with pytest.raises(ValueError, match="not a loopback address"):
        CentralSettings(**base, host="0.0.0.0", console=console)  # noqa: S104
    allowed = {**console, "allow_public": True}
    assert CentralSettings(**base, host="0.0.0.0", console=allowed).console.enabled  # noqa: S104
    assert CentralSettings(**base, host="127.0.0.1", console=console).console.enabled


def test_an_operator_issues_an_enrolment_code_shown_once_and_a_certificate_from_a_request(
    authority: Authority,
) -> None:
    central = authority.central
    member = MemberId.parse("EE/GOV/70000310")
    central.registry.register_member(member, "Population Register", actor="test")

    vera = authority.signed_in("vera")
    assert "Issue an enrolment code" not in vera.get(f"{CONSOLE}/members").text
    assert "Issue from a request" not in vera.get(f"{CONSOLE}/certificates").text
    olga = authority.signed_in("olga")
    members = olga.get(f"{CONSOLE}/members")
    forged = olga.post(
        f"{CONSOLE}/members/enrolment-code",
        {"csrf": "forged", "member": str(member), "gateway": "gw1", "address": "https://a:1"},
    )
    assert forged.status_code == 403
    bad = olga.submit(members, "Issue an enrolment code", gateway="gw1", address="http://x")
    assert bad.status_code == 400
    assert bad.headers["x-road-error"] == "Client.InvalidRequest"
    shown = olga.submit(
        members, "Issue an enrolment code", gateway="gw1", address="https://127.0.0.1:8443"
    )
    assert shown.status_code == 200, shown.text[:2000]
    assert shown.headers["cache-control"] == "no-store"
    code = unescape(shown.text.split('id="code" dir="ltr">')[1].split("<")[0])
    assert re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){5}", code)
    # Listed without its letters; the gateway is registered at the address given.
    listed = olga.get(f"{CONSOLE}/members")
    assert code not in listed.text
    [row] = rows(listed, "codes")
    assert "EE/GOV/70000310/gw1" in row
    assert "console:olga" in row
    assert 'data-status="waiting"' in row
    assert "https://127.0.0.1:8443" in rows(listed, "members")[0]
    assert authority.events()[-1][:3] == (
        "console:olga",
        "enrolment_code.issued",
        "EE/GOV/70000310/gw1",
    )

    # The offline path: a request carried by hand, issued from the certificates page.
    key = generate_key()
    page = olga.get(f"{CONSOLE}/certificates")
    broken = olga.submit(page, 'name="csr"', profile="signing", owner=str(member), csr="x")
    assert broken.headers["x-road-error"] == "Client.InvalidCertificateRequest"
    issued = olga.submit(
        page,
        'name="csr"',
        profile="tls",
        owner="EE/GOV/70000310/gw1",
        csr=csr_pem(build_csr(key, "x")),
    )
    assert issued.status_code == 200, issued.text[:2000]
    pem = unescape(issued.text.split('id="certificate" dir="ltr">')[1].split("</pre>")[0])
    serial = authority.events()[-1][3]["serial"]
    assert authority.events()[-1][:3] == (
        "console:olga",
        "certificate.issued.tls",
        "EE/GOV/70000310/gw1",
    )
    download = vera.get(f"{CONSOLE}/certificates/pem?serial={serial}")
    assert download.status_code == 200
    assert download.text == pem
    assert "attachment" in download.headers["content-disposition"]
    assert vera.get(f"{CONSOLE}/certificates/pem?serial=00").status_code == 404
    olga.close()
    vera.close()


def test_approving_a_member_with_its_gateway_issues_the_gateways_enrolment_code(
    authority: Authority,
) -> None:
    applied = apply(authority, kind="member", id="EE/GOV/70000777", name="Commercial Register")
    number = applied.json()["id"]
    olga = authority.signed_in("olga")
    home = olga.get(f"{CONSOLE}/")
    marker = f'name="application" value="{number}"><button'
    mistyped = olga.submit(home, marker, gateway="gw1", address="http://127.0.0.1:8443")
    assert mistyped.status_code == 400
    assert authority.central.registry.members() == []  # nothing approved
    shown = olga.submit(home, marker, gateway="gw1", address="https://127.0.0.1:8443")
    assert shown.status_code == 200, shown.text[:2000]
    assert re.search(r'id="code" dir="ltr">[A-Z2-7]{4}(-[A-Z2-7]{4}){5}<', shown.text)
    [member] = authority.central.registry.members()
    assert [g.identifier for g in member.gateways] == ["EE/GOV/70000777/gw1"]
    assert [e[1] for e in authority.events()[-4:]] == [
        "member.registered",
        "application.approved",
        "gateway.registered",
        "enrolment_code.issued",
    ]
    olga.close()
