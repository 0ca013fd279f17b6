"""The citizen's journey through the demo, in a real browser (Debian's Chromium via Playwright),
in every language of the pages, checked for accessibility on every page it visits.

Starts ``exchange demo`` on free ports once for the module, then walks the same journey in
English, French and Arabic, each as its own citizen of the sample population (so that the three
do not depend on each other's consents): looks at the portal and the consent service signed out,
signs in at the portal, starts the passport procedure, gives consent at the consent service, sees
the birth certificate the portal fetched, answers the rating form, opens "who accessed my data",
verifies the access's receipt, revokes the consent and sees the next fetch refused; then applies
for a teaching position, whose diploma the university shows (preview) before the citizen approves
sending it; then the public figures and a page that says something did not work.

On every page: the ``<html>`` element names the language and its direction (``rtl`` in Arabic),
and axe-core (bundled by the ``axe-playwright-python`` package; nothing is fetched) finds no
violation of the WCAG 2.0, 2.1 and 2.2 A and AA rules nor of its best-practice rules
(landmarks, one main, heading order, a skip link's target; see ``docs/accessibility.md``). The
problems of all pages are gathered and reported together at the end. The pages forbid scripts
(their content security policy), so the browser context that injects axe is made with
``bypass_csp=True``: only here, in the test, never in the pages.

The English journey is done with the keyboard alone: Tab and Shift+Tab to reach each control,
Enter on links and Space on buttons and radio buttons, no pointer. Each page's first Tab must
land on its "skip to main content" link, every focused control must show a focus outline, and
each Tab must move forward in the document's order (Shift+Tab backward), never jump around. The
French and Arabic journeys click, which is quicker, and leave out three steps that show a page
already checked with other words in it (the receipt verified, the refused fetch, the diploma
after approval); what they add is the text and the right-to-left layout. The notifications page,
which the demo does not offer (it has no SMTP server), is rendered as the portal renders it and
checked in each language too.

A screenshot of each English step goes to ``EXCHANGE_SCREENSHOTS`` (the README's pictures: ``make
screenshots``) or to the module's temporary folder, and one page (the birth certificate fetched)
in French and in Arabic as ``05-birth-certificate-fr.png`` and ``-ar.png``.

Skipped when Chromium or the axe package is not installed, unless ``EXCHANGE_REQUIRE_BROWSER`` is
set (CI sets it).
Everything listens on loopback; every wait is bounded (Playwright's default timeout, the test
timeout of pytest-timeout).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from exchange.cli import demo as demo_ports
from exchange.web import languages
from tests.servers import free_ports, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OFFSETS = demo_ports.ALL_OFFSETS

playwright_api = pytest.importorskip("playwright.sync_api")
if os.environ.get("EXCHANGE_REQUIRE_BROWSER"):  # a missing checker fails here, never skips
    axe_api = importlib.import_module("axe_playwright_python.base")
else:
    axe_api = pytest.importorskip("axe_playwright_python.base")
if not Path(CHROMIUM).exists():
    if os.environ.get("EXCHANGE_REQUIRE_BROWSER"):
        raise RuntimeError(f"Chromium is required here but {CHROMIUM} is missing")
    pytest.skip("Chromium is not installed", allow_module_level=True)

# WCAG 2.0, 2.1 and 2.2, levels A and AA, and axe's best practices (landmarks, headings).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
AXE_SCRIPT = axe_api.AXE_SCRIPT
MOST_TABS = 80  # no control of these pages is further than this from the previous one
pytestmark = pytest.mark.timeout(240)  # each journey takes 10-35 s; busy CI machines are slower


@dataclass(frozen=True)
class Citizen:
    code: str
    name: str
    registration: str  # the birth certificate's number
    diploma: str


# One citizen per language, each with a birth certificate and a diploma in the sample registers.
CITIZENS = {
    "en": Citizen("EE38001085718", "Mari Tamm", "B-1980-000123", "MA-2004-1187"),
    "fr": Citizen("EE39107156021", "Jaan Kask", "B-1991-004417", "BA-2014-0311"),
    "ar": Citizen("EE50203110012", "Sofia Mets", "B-2002-001177", "BS-2024-0528"),
}


@dataclass(frozen=True)
class Demo:
    folder: Path
    portal: str
    consent: str


@contextlib.contextmanager
def demo(folder: Path) -> Iterator[Demo]:
    base = free_ports(OFFSETS)
    args = ["demo", "--data-dir", str(folder / "demo"), "--port", str(base)]
    health = f"http://127.0.0.1:{base + 50}/health"
    with serving(args, health_url=health, log=folder / "demo.log", ready_within=60):
        yield Demo(folder, f"http://127.0.0.1:{base + 50}", f"http://127.0.0.1:{base + 60}")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with demo(tmp_path_factory.mktemp("journey")) as started:
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(running: Demo) -> Path:
    target = Path(os.environ.get("EXCHANGE_SCREENSHOTS") or running.folder / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


# Run in the page on each Tab: where focus is now, whether it shows, whether it moved the way
# the key goes in the document's order. The previous element is kept on the window, which a new
# page starts without.
FOCUS_STEP = """(target, backward) => {
  const now = document.activeElement;
  const before = window.__focused || null;
  window.__focused = now;
  const style = getComputedStyle(now);
  const moved = !before || before === document.body ||
    Boolean(before.compareDocumentPosition(now) &
      (backward ? Node.DOCUMENT_POSITION_PRECEDING : Node.DOCUMENT_POSITION_FOLLOWING));
  return {
    reached: now === target,
    what: now.outerHTML.slice(0, 120),
    shown: now === document.body || (now.matches(':focus-visible') &&
      style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2),
    moved: moved,
    skip: now.matches('a.skip[href="#main"]'),
    ahead: now === document.body ||
      Boolean(now.compareDocumentPosition(target) & Node.DOCUMENT_POSITION_FOLLOWING),
  };
}"""
# Whether ``target`` comes after the focus (Tab), or before it (Shift+Tab).
AHEAD = """(target) => document.activeElement === document.body ||
  Boolean(document.activeElement.compareDocumentPosition(target) &
    Node.DOCUMENT_POSITION_FOLLOWING)"""


@dataclass
class Visit:
    """One citizen's journey in one language: each page checked as it arrives, each control
    reached by the keyboard alone or clicked."""

    page: Any
    language: str
    keyboard: bool
    problems: list[str] = field(default_factory=list)
    presses: dict[str, int] = field(default_factory=dict)  # keys pressed to move focus
    checked: set[str] = field(default_factory=set)  # the pages axe has looked at
    _fresh: bool = True  # no Tab pressed on this page yet

    def t(self, message: str, **values: object) -> str:
        """``message`` as the pages show it in this visit's language."""
        text = languages.translations(self.language).gettext(message)
        return text % values if values else text

    def arrived(self, where: str) -> None:
        """A new page: its language, its direction, and what axe finds on it."""
        self._fresh = True
        expect = playwright_api.expect
        html = self.page.locator("html")
        expect(html).to_have_attribute("lang", self.language)
        expect(html).to_have_attribute("dir", languages.direction(self.language))
        if where in self.checked:
            return  # the same page again (signing in at each site)
        self.checked.add(where)
        options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}
        found = axe_api.AxeResults(self.page.evaluate("(o) => axe.run(document, o)", options))
        if found.violations_count:
            self.problems.append(f"{self.language} {where}: {found.generate_report()}")

    def activate(self, target: Any) -> None:
        """Enter on a link, Space on a button or radio button, reached by Tab; else a click."""
        if not self.keyboard:
            target.click()
            return
        self.focus(target)
        link = target.evaluate("(t) => t.tagName === 'A'")
        self.page.keyboard.press("Enter" if link else "Space")

    def focus(self, target: Any) -> None:
        target.wait_for()
        if self._fresh:
            self._fresh = False
            step = self._press("Tab", target)
            if not step["skip"]:
                self.problems.append(f"{self.language}: the first Tab reached {step['what']}")
            elif target.evaluate("(t) => Boolean(t.closest('main'))"):
                self.page.keyboard.press("Enter")  # skip the header: focus goes to <main>
                self.page.wait_for_function("() => document.activeElement.closest('main')")
        ahead = target.evaluate(AHEAD)
        for _ in range(MOST_TABS):
            step = self._press("Tab" if ahead else "Shift+Tab", target)
            if step["reached"]:
                return
            ahead = step["ahead"]
        raise AssertionError(f"{MOST_TABS} presses of Tab did not reach {target}")

    def _press(self, key: str, target: Any) -> dict[str, Any]:
        self.page.keyboard.press(key)
        step: dict[str, Any] = target.evaluate(FOCUS_STEP, key == "Shift+Tab")
        self.presses[key] = self.presses.get(key, 0) + 1
        if not step["shown"]:
            self.problems.append(f"{self.language}: no visible focus on {step['what']}")
        if not step["moved"]:
            self.problems.append(f"{self.language}: {key} went the wrong way to {step['what']}")
        return step


def journey(browser: Any, running: Demo, language: str, shots: Path, *, whole: bool) -> Visit:
    """The journey in ``language`` (see the module's text), with the problems it found.

    ``whole``: by keyboard alone, with a screenshot of every step. Otherwise by pointer, leaving
    out the steps that show a page already checked with other words in it (the receipt verified,
    the refused fetch, the diploma after approval), and with one screenshot, the birth
    certificate, named for the language."""
    keyboard = every_step = whole
    citizen = CITIZENS[language]
    context = browser.new_context(
        viewport={"width": 1100, "height": 800}, locale=language, bypass_csp=True
    )
    context.set_default_timeout(20_000)
    context.add_init_script(script=AXE_SCRIPT)  # in every page before the page's own content
    page = context.new_page()
    visit = Visit(page, language, keyboard)
    expect, t = playwright_api.expect, visit.t
    portal, consent = running.portal, running.consent
    passport = page.locator("a[href='/procedures/passport']")

    def snap(name: str) -> None:
        if every_step:
            visit.page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        elif name == "05-birth-certificate":
            visit.page.screenshot(path=str(shots / f"{name}-{language}.png"), full_page=True)

    def sign_in() -> None:
        expect(visit.page.get_by_role("button", name=citizen.name)).to_be_visible()
        visit.arrived("identity provider's sign-in")
        visit.activate(visit.page.get_by_role("button", name=citizen.name))

    page.goto(f"{consent}/")
    visit.arrived("consent service, signed out")
    page.goto(f"{portal}/")
    visit.arrived("portal, signed out")
    snap("01-portal")
    visit.activate(page.get_by_role("link", name=t("Sign in")))
    expect(page.get_by_role("button", name=citizen.name)).to_be_visible()
    snap("02-sign-in")
    sign_in()
    expect(page.get_by_text(t("Welcome, %(name)s.", name=citizen.name))).to_be_visible()
    visit.arrived("home")

    visit.activate(passport)
    expect(page.locator("#needs-consent")).to_be_visible()
    visit.arrived("procedure, no consent")
    snap("03-procedure")
    visit.activate(page.locator("#give-consent"))
    sign_in()  # at the consent service
    expect(page.get_by_role("heading", name=t("Do you agree?"))).to_be_visible()
    if language == "en":
        expect(page.locator("#terms")).to_contain_text("birth certificate")
    visit.arrived("consent's terms")
    snap("04-consent")
    visit.activate(page.get_by_role("button", name=t("Yes, I give my consent")))
    expect(page.get_by_role("heading", name=t("Consent given"))).to_be_visible()
    visit.arrived("consent given")
    visit.activate(page.locator("form[action$='/consent'] button"))  # back to the portal
    visit.activate(page.locator("#fetch"))
    expect(page.locator("#evidence")).to_contain_text(citizen.registration)
    visit.arrived("evidence fetched, rating form")
    snap("05-birth-certificate")

    # The second question first, then back to the first one (Shift+Tab by keyboard).
    visit.activate(page.locator("#rating input[name=brought][value=no]"))
    visit.activate(page.locator("#rating input[name=score]").first)
    visit.activate(page.locator("#rate"))
    expect(page.get_by_role("heading", name=t("Thank you"))).to_be_visible()
    visit.arrived("rating sent")

    if whole:  # the register seals its log now, so that the receipt can be verified at once
        audit = subprocess.run(
            [
                sys.executable,
                "-m",
                "exchange.cli",
                "audit",
                "head",
                "-c",
                str(running.folder / "demo" / "population-gateway" / "gateway.toml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert audit.returncode == 0, audit.stderr
    page.goto(f"{portal}/")
    visit.activate(page.locator("a[href='/usage']"))
    row = page.locator("#usages tbody tr").first
    expect(row).to_contain_text("passport-application")
    # Every register of the demo offers the usage service: none is missing from the list.
    expect(page.get_by_role("alert")).to_have_count(0)
    visit.arrived("who accessed my data")
    snap("06-who-accessed-my-data")
    if whole:
        visit.activate(row.get_by_role("button", name=t("Verify")))
        expect(page.locator("#verification.success")).to_be_visible()
        if language == "en":
            expect(page.locator("#verification")).to_contain_text("Verified")
        visit.arrived("receipt verified")
        snap("07-receipt-verified")

    page.goto(f"{consent}/")
    expect(page.locator("[data-status=active]").first).to_be_visible()
    visit.arrived("consents")
    visit.activate(page.get_by_role("button", name=t("Revoke this consent")).first)
    expect(page.locator("[data-status=revoked]").first).to_be_visible()
    visit.arrived("consent revoked")
    snap("08-consent-revoked")

    if whole:
        page.goto(f"{portal}/")
        visit.activate(passport)
        visit.activate(page.locator("#fetch"))
        expect(page.locator("#refused")).to_be_visible()
        if language == "en":
            expect(page.locator("#refused")).to_contain_text("revoked")
        visit.arrived("fetch refused")
        snap("09-next-fetch-refused")

    # Preview: the diploma is shown to the citizen at the university before it is sent.
    page.goto(f"{portal}/")
    visit.activate(page.locator("a[href='/procedures/teaching-position']"))
    visit.activate(page.locator("#give-consent"))
    if language == "en":
        expect(page.locator("#terms")).to_contain_text("before each release")
    visit.activate(page.get_by_role("button", name=t("Yes, I give my consent")))
    visit.activate(page.locator("form[action$='/consent'] button"))
    visit.activate(page.locator("#fetch"))
    expect(page.locator("#preview")).to_be_visible()
    visit.arrived("preview offered")
    with context.expect_page() as opened:  # the link opens the register's page beside this one
        visit.activate(page.locator("#preview-link"))
    portal_page, page = page, opened.value
    visit.page = page
    sign_in()  # at the university
    expect(page.locator("#evidence")).to_contain_text(citizen.diploma)
    visit.arrived("preview at the university")
    snap("10-preview-at-the-university")
    visit.activate(page.get_by_role("button", name=t("Send this data")))
    expect(page.get_by_role("heading", name=t("Approved"))).to_be_visible()
    visit.arrived("preview approved")
    page.close()
    page = visit.page = portal_page
    if whole:
        page.goto(f"{portal}/procedures/teaching-position")
        visit.activate(page.locator("#fetch"))
        expect(page.locator("#evidence")).to_contain_text(citizen.diploma)
        visit.arrived("diploma after approval")
        snap("11-diploma-after-approval")

    page.goto(f"{portal}/figures")
    expect(page.locator("#documents")).to_be_visible()
    visit.arrived("public figures")
    page.goto(f"{portal}/procedures/no-such-procedure")
    expect(page.get_by_role("heading", name=t("That did not work"))).to_be_visible()
    visit.arrived("failure")
    context.close()
    return visit


def test_journey_in_english_by_keyboard_alone(browser: Any, running: Demo, shots: Path) -> None:
    visit = journey(browser, running, "en", shots, whole=True)
    assert not visit.problems, "\n".join(visit.problems)
    assert visit.presses.get("Tab"), visit.presses
    assert visit.presses.get("Shift+Tab"), visit.presses


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_journey_in_french_and_arabic(
    browser: Any, running: Demo, shots: Path, language: str
) -> None:
    visit = journey(browser, running, language, shots, whole=False)
    assert not visit.problems, "\n".join(visit.problems)


def test_notifications_page_in_each_language(browser: Any) -> None:
    """The demo has no SMTP server, so its portal offers no e-mail notices: their page is rendered
    here as the portal renders it (a refused address, a register out of reach, the saved
    choice) in each language and given to Chromium as it is, for axe to look at."""
    from exchange.portal.notices import Subscription
    from exchange.web.pages import Pages

    context = browser.new_context(bypass_csp=True)
    context.add_init_script(script=AXE_SCRIPT)
    page, problems = context.new_page(), []
    for language, citizen in CITIZENS.items():
        shown = {
            "refused address": {"problem": "That does not look like an e-mail address."},
            "saved, a register out of reach": {
                "saved": True,
                "unreachable": ["Population Register"],
                "subscription": Subscription("citizen@example.org", language, "daily"),
            },
        }
        visit = Visit(page, language, keyboard=False)
        for where, context_of_page in shown.items():
            with languages.speaking(language):
                html = Pages("exchange.portal").render(
                    "notifications.html",
                    **{
                        "site": "State Portal",
                        "citizen": SimpleNamespace(name=citizen.name, subject=citizen.code),
                        "subscription": None,
                        "csrf": "token",
                        "here": "/notifications",
                        "unreachable": [],
                        **context_of_page,
                    },
                )
            page.set_content(html)
            visit.arrived(f"notifications, {where}")
        problems += visit.problems
    context.close()
    assert not problems, "\n".join(problems)
