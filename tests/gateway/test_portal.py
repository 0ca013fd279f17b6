"""The citizen's whole journey through the portal, every role in process: sign in, start a
procedure, consent at the consent service, see the fetched birth certificate, see who accessed
the data and verify the receipt, revoke the consent, and find the next fetch refused. (The
browser journey, tests/test_browser_journey.py, takes the same path through real sockets.)"""

from __future__ import annotations

import re
from html import unescape

import httpx
import pytest

from exchange.sample import federation
from tests.browser import Browser
from tests.gateway.conftest import MARI, PORTAL_CLIENT, RESIDENCE, Roles

JAAN = "EE39107156021"


def link(page: httpx.Response, element_id: str) -> str:
    found = re.search(rf'id="{element_id}" href="([^"]+)"', page.text)
    assert found, page.text[:3000]
    return unescape(found.group(1))


def test_citizen_journey(roles: Roles) -> None:
    portal = f"http://127.0.0.1:{roles.ports.portal}"
    browser = Browser(roles.roles.loopback.blocking())
    try:
        home = browser.sign_in(browser.get(f"{portal}/login?then=/"), MARI)
        assert "Welcome, Mari Tamm" in home.text

        procedure = browser.get(f"{portal}/procedures/passport")
        assert 'id="needs-consent"' in procedure.text
        consent_page = browser.sign_in(browser.get(link(procedure, "give-consent")), MARI)
        assert "Do you agree?" in consent_page.text
        assert "State Portal" in consent_page.text
        assert "birth certificate" in consent_page.text
        granted = browser.submit(consent_page, 'value="grant"', decision="grant")
        assert "Consent given" in granted.text
        back = browser.submit(granted, 'name="consent"')
        assert str(back.url).startswith(f"{portal}/procedures/passport")
        assert 'id="consent"' in back.text

        fetched = browser.submit(back, 'id="fetch"')
        assert 'id="evidence"' in fetched.text, fetched.text[:3000]
        assert "B-1980-000123" in fetched.text  # the registration number, from the register
        assert "Tamm" in fetched.text

        roles.roles.run(roles.provider.heads.sign_now())
        usage = browser.get(f"{portal}/usage")
        assert usage.status_code == 200, usage.text
        assert "State Portal" in usage.text
        assert "passport-application" in usage.text
        verified = browser.submit(usage, 'name="seq"')
        assert 'id="verification"' in verified.text
        assert "Verified:" in verified.text, verified.text[:3000]
        shown = verified.text.split('id="verification"')[1].split("</div>")[0]
        assert "/gw1/" not in shown  # the log's name and record number are for operators

        consents = browser.get(f"http://127.0.0.1:{roles.ports.consent}/")
        assert 'data-status="active"' in consents.text
        after = browser.submit(consents, "Revoke this consent")
        assert 'data-status="revoked"' in after.text
        [card] = [c for c in after.text.split('class="card"') if 'data-status="revoked"' in c]
        assert "may obtain" not in card  # no longer: it says what the consent was
        assert "You revoked this consent on" in card

        procedure = browser.get(f"{portal}/procedures/passport")
        refused = browser.submit(procedure, 'id="fetch"')
        assert 'id="refused"' in refused.text
        assert "revoked" in refused.text
        assert 'id="needs-consent"' in refused.text  # the portal asks for a new consent
    finally:
        browser.close()


def test_a_declined_consent_fetches_nothing(roles: Roles) -> None:
    portal = f"http://127.0.0.1:{roles.ports.portal}"
    browser = Browser(roles.roles.loopback.blocking())
    try:
        browser.sign_in(browser.get(f"{portal}/login?then=/"), "EE39107156021")
        procedure = browser.get(f"{portal}/procedures/passport")
        consent_page = browser.sign_in(
            browser.get(link(procedure, "give-consent")), "EE39107156021"
        )
        declined = browser.submit(consent_page, 'value="decline"', decision="decline")
        assert "Consent not given" in declined.text
        back = browser.submit(declined, 'name="declined"')
        assert "You did not give consent" in back.text
        assert 'id="needs-consent"' in back.text
    finally:
        browser.close()


def test_pages_need_sign_in_and_refuse_foreign_return_addresses(roles: Roles) -> None:
    portal = f"http://127.0.0.1:{roles.ports.portal}"
    answer = roles.http.get(f"{portal}/usage", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login")
    consent = f"http://127.0.0.1:{roles.ports.consent}"
    browser = Browser(roles.roles.loopback.blocking())
    try:
        query = (
            "consumer=EE/GOV/70000001/citizen-portal"
            "&service=EE/GOV/70000310/population-registry/birth-certificate"
            "&purpose=x&purpose_text=y&return_to=https://evil.example/steal"
        )
        page = browser.sign_in(browser.get(f"{consent}/grant?{query}"), MARI)
        assert page.status_code == 400
        assert "may not send citizens back" in page.text
    finally:
        browser.close()


def test_who_accessed_my_data_speaks_plain_words(roles: Roles) -> None:
    portal = f"http://127.0.0.1:{roles.ports.portal}"
    jaan = {"X-Road-UserId": JAAN}
    assert roles.call(f"{RESIDENCE}?person={JAAN}", headers=jaan).status_code == 200
    access = roles.provider_access()
    access.revoke(service=federation.RESIDENCE_RECORD, subject=PORTAL_CLIENT, actor="test")
    try:
        for _ in range(2):
            assert roles.call(f"{RESIDENCE}?person={JAAN}", headers=jaan).status_code == 403
    finally:
        access.grant(
            service=federation.RESIDENCE_RECORD,
            subject=PORTAL_CLIENT,
            legal_basis=federation.RESIDENCE_LEGAL_BASIS,
            actor="test",
        )
    browser = Browser(roles.roles.loopback.blocking())
    try:
        browser.sign_in(browser.get(f"{portal}/login?then=/"), JAAN)
        page = browser.get(f"{portal}/usage")
        accesses = page.text.split('id="usages"')[1].split("</table>")[0]
        assert "refused" not in accesses  # the list of accesses holds releases only
        attempts = page.text.split('id="attempts"')[1]
        assert "2 times" in attempts
        assert "State Portal" in attempts
        assert "had no right to it" in attempts
        assert "Server." not in page.text
        with roles.roles.loopback.down(f"https://127.0.0.1:{roles.ports.provider_tls}"):
            failed = browser.get(f"{portal}/usage")
        assert "could not be reached just now" in failed.text
        assert "Server." not in failed.text
        assert "gateway" not in failed.text
    finally:
        browser.close()


def test_a_return_address_that_leaves_the_registered_pages_grants_nothing(roles: Roles) -> None:
    """The consent service compares URLs, not strings: an address that starts with the
    portal's registered ``/procedures/`` yet leads elsewhere is refused on the page and when
    the form is posted, before anything is granted."""
    portal = f"http://127.0.0.1:{roles.ports.portal}"
    consent = f"http://127.0.0.1:{roles.ports.consent}"
    browser = Browser(roles.roles.loopback.blocking())
    try:
        browser.sign_in(browser.get(f"{portal}/login?then=/"), JAAN)
        procedure = browser.get(f"{portal}/procedures/passport")
        page = browser.sign_in(browser.get(link(procedure, "give-consent")), JAAN)
        assert "Do you agree?" in page.text
        before = browser.get(f"{consent}/").text.count("data-status=")
        for hostile in ("/procedures/../../evil", "/procedures/@evil.example", "/procedures//x"):
            shown = browser.get(str(page.url.copy_set_param("return_to", portal + hostile)))
            assert shown.status_code == 400, hostile
            assert "may not send citizens back" in shown.text
            posted = browser.submit(
                page, 'value="grant"', decision="grant", return_to=portal + hostile
            )
            assert posted.status_code == 400, hostile
            assert "may not send citizens back" in posted.text
            assert 'name="consent"' not in posted.text  # no artefact to carry anywhere
        assert browser.get(f"{consent}/").text.count("data-status=") == before
    finally:
        browser.close()


@pytest.mark.parametrize(
    ("site", "signed_in", "signed_out"),
    [
        ("portal", "Welcome, Mari Tamm", "Sign in to use public services"),
        (
            "consent",
            'Mari Tamm (<bdi dir="ltr">EE38001085718</bdi>)',  # the code stays left-to-right
            "Sign in to see who may obtain your data",
        ),
    ],
)
def test_signing_out_needs_the_forms_csrf_token(
    roles: Roles, site: str, signed_in: str, signed_out: str
) -> None:
    """Another site cannot sign a citizen out: a POST /logout without this site's CSRF token is
    refused and the session lives on; the page's own Sign out button works."""
    home = f"http://127.0.0.1:{getattr(roles.ports, site)}/"
    browser = Browser(roles.roles.loopback.blocking())
    try:
        assert signed_in in browser.sign_in(browser.get(f"{home}login?then=/"), MARI).text
        for forged in ({}, {"csrf": "not-the-token"}):
            refused = browser.post(f"{home}logout", forged)
            assert refused.status_code == 403, refused.text
            assert refused.headers["X-Road-Error"] == "Client.AccessDenied"
            assert signed_in in browser.get(home).text
        out = browser.submit(browser.get(home), "Sign out")
        assert out.status_code == 200
        assert signed_out in out.text
        assert signed_in not in browser.get(home).text
    finally:
        browser.close()


def test_every_page_of_a_signed_in_citizen_offers_sign_out(roles: Roles) -> None:
    portal = f"http://127.0.0.1:{roles.ports.portal}"
    browser = Browser(roles.roles.loopback.blocking())
    try:
        browser.sign_in(browser.get(f"{portal}/login?then=/"), MARI)
        procedure = browser.get(f"{portal}/procedures/passport")
        pages = {
            "home": browser.get(f"{portal}/"),
            "procedure": procedure,
            "usage": browser.get(f"{portal}/usage"),
            "consent": browser.sign_in(browser.get(link(procedure, "give-consent")), MARI),
        }
        for name, page in pages.items():
            assert 'action="/logout"' in page.text, name
            assert re.search(
                r'action="/logout"><input type="hidden" name="csrf" value="[^"]+"', page.text
            ), name
    finally:
        browser.close()


def test_pages_speak_the_readers_language_and_remember_a_choice(roles: Roles) -> None:
    """Arabic from the browser's Accept-Language, right to left with identifiers kept left to
    right, through the identity provider, the portal and the consent service; the words of the
    settings (procedures, evidence fields, members) in Arabic too. A choice on a page beats the
    browser and is remembered; an unknown language falls back to the default, English."""
    portal = f"http://127.0.0.1:{roles.ports.portal}"
    browser = Browser(roles.roles.loopback.blocking())
    browser.http.headers["Accept-Language"] = "ar-MA,ar;q=0.9,fr;q=0.8"
    rtl = '<html lang="ar" dir="rtl">'
    try:
        sign_in = browser.get(f"{portal}/login?then=/")
        assert rtl in sign_in.text
        assert "اختر مواطنًا تجريبيًا" in sign_in.text
        home = browser.submit(sign_in, 'name="citizen"', citizen=JAAN)
        assert rtl in home.text
        assert "مرحبًا، Jaan Kask." in home.text
        assert "طلب جواز سفر" in home.text  # the procedure's title, from the settings
        assert f'<bdi dir="ltr">{JAAN}</bdi>' in home.text

        procedure = browser.get(f"{portal}/procedures/passport")
        assert "امنح موافقتك لدى خدمة الموافقات" in procedure.text
        grant = browser.get(link(procedure, "give-consent"))  # the portal passes lang=ar on
        grant = browser.submit(grant, 'name="citizen"', citizen=JAAN)
        assert rtl in grant.text
        assert "هل توافق؟" in grant.text
        terms = grant.text.split('id="terms"')[1].split("</div>")[0]
        for words in ("بوابة الدولة", "«شهادة الميلاد»", "سجل السكان"):  # from the settings
            assert words in terms
        assert "التحقق من هويتك وجنسيتك" in terms  # the purpose, in the reader's language
        assert "مرات على الأكثر" in terms  # three uses: the "few" plural form
        assert not re.search("[٠-٩]", terms)  # Latin digits, deliberately
        granted = browser.submit(grant, 'value="grant"', decision="grant")
        assert "تم منح الموافقة" in granted.text
        back = browser.submit(granted, 'name="consent"')
        fetched = browser.submit(back, 'id="fetch"')
        assert rtl in fetched.text
        assert (
            '<th scope="row">شهادة الميلاد / رقم التسجيل</th><td><bdi>B-1991-004417</bdi></td>'
            in fetched.text
        )
        labelled = '<th scope="row">شهادة الميلاد / الأم / الاسم الشخصي</th>'  # each labelled
        assert labelled in fetched.text

        french = browser.get(f"{portal}/procedures/passport?lang=fr")
        assert '<html lang="fr" dir="ltr">' in french.text
        assert "Demander un passeport" in french.text
        cookie = french.headers["set-cookie"]
        assert cookie.startswith("lang=fr;")
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
        assert "Secure" not in cookie  # the sample's portal is plain http
        later = browser.get(f"{portal}/usage")  # the browser still asks for Arabic
        assert '<html lang="fr" dir="ltr">' in later.text
        assert "Qui a consulté mes données" in later.text
        assert 'href="/usage?lang=ar"' in later.text  # the switch, back to Arabic
    finally:
        browser.close()

    stranger = Browser(roles.roles.loopback.blocking())
    stranger.http.headers["Accept-Language"] = "de-DE,de;q=0.9"
    try:
        page = stranger.get(f"{portal}/?lang=xx")
        assert '<html lang="en" dir="ltr">' in page.text
        assert "Public services" in page.text
        assert "set-cookie" not in page.headers or "lang=" not in page.headers["set-cookie"]
    finally:
        stranger.close()
