"""The gateway console, every role in process: staff sign in at the identity provider and get
the roles their role claim names; every route refuses who is not signed in and whose roles lack
its right; operators grant and revoke access rights, each change in the change log with its
actor; the operations figures and their query API count what the operational records hold;
auditors browse, verify and export the audit log; everyone sees the certificates' expiry."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta
from html import unescape
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import bundle
from audit.verify import verify
from exchange.gateway import models
from exchange.gateway.console import certificates
from exchange.gateway.console.app import PUBLIC, ROUTES, create_console_app
from exchange.gateway.console.staff import RIGHTS
from exchange.gateway.settings import GatewaySettings
from exchange.identity.login import OidcLogin
from exchange.sample import federation
from exchange.trust.globalconf import TrustAnchor
from tests.browser import Browser, hidden_fields
from tests.gateway.conftest import MARI, PORTAL_CLIENT, RESIDENCE, Roles

ROLE_OF = {"olga": "operator", "aivar": "auditor", "vera": "viewer"}
CLIENT_ID = federation.console_client("population-gateway")


def console(roles: Roles) -> str:
    return f"http://127.0.0.1:{roles.ports.provider_consumer}/console"


def signed_in(roles: Roles, username: str) -> Browser:
    """A browser of staff member ``username``, signed in to the provider gateway's console."""
    browser = Browser(roles.roles.loopback.blocking())
    page = browser.get(f"{console(roles)}/")
    assert 'name="staff"' in page.text, page.text[:2000]  # the identity provider's page
    home = browser.submit(page, f'value="{username}"', staff=username)
    assert home.status_code == 200, home.text[:2000]
    assert str(home.url) == f"{console(roles)}/"
    return browser


def csrf_of(page: httpx.Response) -> str:
    return hidden_fields(page.text)["csrf"]


def bearer(roles: Roles, username: str, audience: str = CLIENT_ID) -> dict[str, str]:
    idp = roles.roles.idp
    return {"Authorization": f"Bearer {idp.id_token(idp.staff[username], audience=audience)}"}


def test_every_route_refuses_the_unknown_and_roles_without_its_right(roles: Roles) -> None:
    # The sweep covers every route the console serves: nothing escapes the table of rights.
    unused = OidcLogin(issuer="http://unused", client_id="x", redirect_uri="http://unused")
    app = create_console_app(roles.provider, login=unused)
    served = {
        (method, route.path)
        for route in app.app.routes  # type: ignore[attr-defined]
        for method in route.methods - {"HEAD"}
    }
    assert served == {(g.method, g.path) for g in ROUTES} | set(PUBLIC)

    anonymous = httpx.Client(transport=roles.roles.loopback.blocking(), timeout=30)
    for guard in ROUTES:
        answer = anonymous.request(guard.method, console(roles) + guard.path)
        if guard.api:
            assert answer.status_code == 401, guard
        else:
            assert answer.status_code == 303, guard
            assert answer.headers["location"].startswith("/console/login?then=/console"), guard
        assert answer.headers["x-frame-options"] == "DENY", guard
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], guard

    for username, role in ROLE_OF.items():
        browser = signed_in(roles, username)
        token = csrf_of(browser.get(f"{console(roles)}/"))
        for guard in ROUTES:
            url = console(roles) + guard.path
            if guard.api:
                answer = anonymous.get(url, headers=bearer(roles, username))
            else:
                if guard.method == "POST":  # every form needs the session's CSRF token
                    forged = browser.http.post(url, data={"csrf": "forged"})
                    assert forged.status_code == 403, (username, guard)
                answer = browser.http.request(guard.method, url, data={"csrf": token})
            allowed = guard.right in RIGHTS[role]
            assert (answer.status_code == 403) != allowed, (username, guard, answer.status_code)
            assert answer.headers["x-frame-options"] == "DENY"
            if guard.method == "POST" and allowed:  # and never without the session's token
                for sent in ({}, {"csrf": "forged"}):
                    forged = browser.http.post(url, data=sent)
                    assert forged.status_code == 403, (username, guard, sent)
        browser.close()

    # A token of another audience, or one that names no console role, opens nothing.
    api = f"{console(roles)}/api/figures"
    citizen = roles.id_token(MARI, federation.PORTAL_CLIENT_ID)
    assert anonymous.get(api, headers={"Authorization": f"Bearer {citizen}"}).status_code == 401
    idp = roles.roles.idp
    nobody = idp.id_token(idp.citizens[MARI], audience=CLIENT_ID)  # no role claim at all
    assert anonymous.get(api, headers={"Authorization": f"Bearer {nobody}"}).status_code == 403


def test_signing_out_needs_the_form_of_this_site(roles: Roles) -> None:
    browser = signed_in(roles, "vera")
    home = browser.get(f"{console(roles)}/")
    assert "Vera Vaher" in home.text
    assert browser.post(f"{console(roles)}/logout", {"csrf": "forged"}).status_code == 403
    assert browser.get(f"{console(roles)}/access").status_code == 200  # still signed in
    out = browser.submit(home, "Sign out")
    assert "You have signed out" in out.text
    again = browser.http.get(f"{console(roles)}/access", follow_redirects=False)
    assert again.status_code == 303
    browser.close()


def change_rows(page: httpx.Response) -> list[str]:
    table = page.text.split('id="changes"')[1].split("</table>")[0]
    return [unescape(re.sub(r"<[^>]+>", " ", row)) for row in table.split("<tr>")[2:]]


def test_an_operator_revokes_and_grants_and_the_change_log_names_them(roles: Roles) -> None:
    olga = signed_in(roles, "olga")
    access = olga.get(f"{console(roles)}/access")
    assert federation.RESIDENCE_RECORD in access.text
    residence = {"X-Road-UserId": MARI, "X-Exchange-Purpose": "residence-check"}
    assert roles.call(f"{RESIDENCE}?person={MARI}", headers=residence).status_code == 200

    marker = f'name="service" value="{federation.RESIDENCE_RECORD}"'
    revoked = olga.submit(access, marker)
    assert 'id="done"' in revoked.text
    assert roles.call(f"{RESIDENCE}?person={MARI}", headers=residence).status_code == 403

    forged = olga.post(
        f"{console(roles)}/access/grant",
        {"csrf": "forged", "service": federation.RESIDENCE_RECORD, "subject": PORTAL_CLIENT},
    )
    assert forged.status_code == 403
    assert roles.call(f"{RESIDENCE}?person={MARI}", headers=residence).status_code == 403

    granted = olga.submit(
        revoked,
        'name="legal_basis"',
        service=federation.RESIDENCE_RECORD,
        subject=PORTAL_CLIENT,
        method="GET",
        path="",
        legal_basis=federation.RESIDENCE_LEGAL_BASIS,
    )
    assert 'id="done"' in granted.text
    assert roles.call(f"{RESIDENCE}?person={MARI}", headers=residence).status_code == 200

    refused = olga.submit(granted, 'name="legal_basis"', subject="EE/GOV/not a client")
    assert refused.status_code == 400  # the identifier rule, shown on the console's page

    newest = change_rows(olga.get(f"{console(roles)}/changes"))
    assert "access.grant" in newest[0]
    assert "console:olga" in newest[0]
    assert federation.RESIDENCE_LEGAL_BASIS in newest[0]
    assert "access.revoke" in newest[1]
    assert "console:olga" in newest[1]
    with Session(roles.provider.engine) as session:
        stored = session.scalars(select(models.Change).order_by(models.Change.id.desc())).first()
    assert stored is not None
    assert (stored.actor, stored.action) == ("console:olga", "access.grant")
    olga.close()


def test_the_query_api_counts_what_the_operational_records_hold(roles: Roles) -> None:
    residence = {"X-Road-UserId": MARI, "X-Exchange-Purpose": "residence-check"}
    for _ in range(3):
        assert roles.call(f"{RESIDENCE}?person={MARI}", headers=residence).status_code == 200
    unknown = roles.call(f"/r1/{federation.POPULATION_REGISTRY}/no-such-service")
    assert unknown.status_code == 404
    roles.roles.run(roles.provider.exchanges.drain())

    http = httpx.Client(transport=roles.roles.loopback.blocking(), timeout=30)
    start = (roles.clock() - timedelta(minutes=30)).replace(microsecond=0)
    end = roles.clock() + timedelta(minutes=1)
    answer = http.get(
        f"{console(roles)}/api/figures",
        params={"from": start.isoformat(), "to": end.isoformat()},
        headers=bearer(roles, "aivar"),
    )
    assert answer.status_code == 200, answer.text
    figures = answer.json()

    table = models.Exchange
    window = (table.response_out >= start, table.response_out < end)
    with Session(roles.provider.engine) as session:
        total = session.scalar(select(func.count()).where(*window))
        failed = session.scalar(select(func.count()).where(*window, table.succeeded.is_(False)))
        by_fault = dict(
            session.execute(
                select(table.fault_code, func.count())
                .where(*window, table.succeeded.is_(False))
                .group_by(table.fault_code)
            ).all()
        )
        by_pair = {
            (service, client): n
            for service, client, n in session.execute(
                select(table.service, table.client, func.count())
                .where(*window)
                .group_by(table.service, table.client)
            )
        }
    assert total is not None
    assert total >= 4
    assert figures["exchanges"] == total
    assert figures["failed"] == failed
    assert figures["succeeded"] == total - (failed or 0)
    assert {e["type"]: e["count"] for e in figures["errors"]} == by_fault
    assert "Server.ServerProxy.UnknownService" in by_fault or any(
        "UnknownService" in str(code) for code in by_fault
    )
    assert {
        (p["service"], p["client"]): p["exchanges"] for p in figures["by_service_and_client"]
    } == by_pair
    assert sum(m["exchanges"] for m in figures["per_minute"]) == total
    assert figures["latency_ms"]["p50"] <= figures["latency_ms"]["p99"]
    assert figures["host"]["disk_total"] > 0

    records = http.get(
        f"{console(roles)}/api/operational-data",
        params={"recordsFrom": int(start.timestamp()), "recordsTo": int(end.timestamp())},
        headers=bearer(roles, "olga"),
    ).json()
    assert len(records["records"]) == total
    assert records["nextRecordsFrom"] is None
    assert {r["securityServerType"] for r in records["records"]} == {"Producer"}
    assert {r["messageUserId"] for r in records["records"]} == {None}  # an operator: no person
    audited = http.get(
        f"{console(roles)}/api/operational-data",
        params={"recordsFrom": int(start.timestamp()), "recordsTo": int(end.timestamp())},
        headers=bearer(roles, "aivar"),
    ).json()
    assert MARI in {r["messageUserId"] for r in audited["records"]}  # an auditor may see it

    olga = signed_in(roles, "olga")
    page = olga.get(f"{console(roles)}/operations?minutes=60")
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="per-minute"' in page.text
    assert "UnknownService" in page.text.split('id="errors"')[1]
    assert federation.RESIDENCE_RECORD in page.text.split('id="pairs"')[1]
    assert "<script" not in page.text
    for language, words in (("ar", "التبادلات في الدقيقة"), ("fr", "Échanges par minute")):
        shown = olga.get(f"{console(roles)}/operations?lang={language}")
        assert shown.status_code == 200
        assert words in shown.text
    olga.close()


def test_an_auditor_browses_verifies_and_exports_the_log(roles: Roles, tmp_path: Path) -> None:
    residence = {"X-Road-UserId": MARI, "X-Exchange-Purpose": "residence-check"}
    assert roles.call(f"{RESIDENCE}?person={MARI}", headers=residence).status_code == 200
    assert roles.call(f"/r1/{federation.POPULATION_REGISTRY}/nothing-here").status_code == 404
    roles.roles.run(roles.provider.heads.sign_now())

    aivar = signed_in(roles, "aivar")
    listed = aivar.get(f"{console(roles)}/audit")
    assert federation.RESIDENCE_RECORD in listed.text
    refused = aivar.get(f"{console(roles)}/audit?outcome=refused")
    rows = refused.text.split('id="records"')[1].split("</table>")[0]
    assert "nothing-here" in rows
    assert 'class="ok"' not in rows  # only refusals
    narrowed = aivar.http.get(
        f"{console(roles)}/audit", params={"service": f"{federation.POPULATION_REGISTRY}/no"}
    )
    assert federation.RESIDENCE_RECORD not in narrowed.text.split('id="records"')[1]

    verified = aivar.get(f"{console(roles)}/audit/verify")
    assert 'id="verified"' in verified.text, verified.text[:3000]
    assert 'id="newest-head"' in verified.text

    exported = aivar.submit(listed, 'id="export"')
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/zip"
    folder = tmp_path / "bundle"
    zipfile.ZipFile(io.BytesIO(exported.content)).extractall(folder)
    anchor = TrustAnchor.load(GatewaySettings.load(roles.layout.provider).anchor)
    chain, bodies, heads, trust = bundle.load(folder, anchor)
    report = verify(chain, bodies, heads, trust)
    assert report.ok, report.problem
    assert report.records >= 2

    changes = change_rows(aivar.get(f"{console(roles)}/changes"))
    assert "audit.export" in changes[0]
    assert "console:aivar" in changes[0]
    aivar.close()


def test_certificates_show_their_status_and_warn_a_month_ahead(roles: Roles) -> None:
    vera = signed_in(roles, "vera")
    page = vera.get(f"{console(roles)}/certificates")
    for purpose in ("signing", "tls", "ca"):
        assert f'data-purpose="{purpose}" data-status="valid"' in page.text
    assert 'id="certificate-warnings"' not in vera.get(f"{console(roles)}/").text
    vera.close()

    gateway = roles.provider
    configuration = gateway.trust.view().configuration
    ends = gateway.keys.signing_certificate.not_valid_after_utc

    def status(days_before_end: int) -> str:
        shown = certificates.shown(
            gateway.settings.data_dir,
            gateway=gateway.settings.id,
            member=str(gateway.member),
            configuration=configuration,
            at=ends - timedelta(days=days_before_end),
        )
        return next(c.status for c in shown if c.purpose == "signing")

    assert status(31) == "valid"
    assert status(29) == "expiring"
    assert status(-1) == "expired"


def test_the_console_stays_off_public_addresses_unless_allowed(tmp_path: Path) -> None:
    base = {
        "id": "EE/GOV/1/gw1",
        "data_dir": str(tmp_path),
        "anchor": str(tmp_path / "anchor.json"),
        "subsystems": ["s"],
    }
    console_spec = {
        "enabled": True,
        "public_url": "https://gw1.example.org",
        "issuer": "https://login.example.org",
        "jwks_url": "https://login.example.org/jwks",
        "client_id": "gw1-console",
    }
    assert not GatewaySettings(**base).console.enabled  # off unless asked for
    public = {"host": "0.0.0.0", "port": 8080}  # noqa: S104 - the case under test
    with pytest.raises(ValueError, match="not a loopback address"):
        GatewaySettings(**base, consumer=public, console=console_spec)
    allowed = GatewaySettings(
        **base, consumer=public, console={**console_spec, "allow_public": True}
    )
    assert allowed.console.enabled
    assert GatewaySettings(**base, console=console_spec).console.enabled  # loopback: fine
    with pytest.raises(ValueError, match="needs issuer"):
        GatewaySettings(**base, console={"enabled": True, "public_url": "http://x"})
    assert json.dumps(allowed.console.roles)  # the default mapping names each role
