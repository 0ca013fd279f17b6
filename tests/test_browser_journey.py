"""The citizen's journey through the demo, in a real browser (Debian's Chromium via Playwright).

Starts ``exchange demo`` on free ports, then as Mari Tamm: signs in at the portal, starts the
passport procedure, gives consent at the consent service, sees the birth certificate the portal
fetched, opens "who accessed my data", verifies the access's receipt, revokes the consent and
sees the next fetch refused; then applies for a teaching position, whose diploma the university
shows her (preview) before she approves sending it. A screenshot of each step goes to
``EXCHANGE_SCREENSHOTS`` (the README's pictures: ``make screenshots``) or to the test's
temporary folder.

Skipped when Chromium is not installed, unless ``EXCHANGE_REQUIRE_BROWSER`` is set (CI sets it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.cli import demo as demo_ports
from tests.servers import free_ports, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OFFSETS = demo_ports.ALL_OFFSETS

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    if os.environ.get("EXCHANGE_REQUIRE_BROWSER"):
        raise RuntimeError(f"Chromium is required here but {CHROMIUM} is missing")
    pytest.skip("Chromium is not installed", allow_module_level=True)


@contextlib.contextmanager
def demo(folder: Path) -> Iterator[int]:
    base = free_ports(OFFSETS)
    args = ["demo", "--data-dir", str(folder / "demo"), "--port", str(base)]
    health = f"http://127.0.0.1:{base + 50}/health"
    with serving(args, health_url=health, log=folder / "demo.log", ready_within=60):
        yield base


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("EXCHANGE_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


def test_citizen_journey_in_chromium(tmp_path: Path, shots: Path) -> None:
    with demo(tmp_path) as base, playwright_api.sync_playwright() as driver:
        portal, consent = f"http://127.0.0.1:{base + 50}", f"http://127.0.0.1:{base + 60}"
        browser = driver.chromium.launch(
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
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.set_default_timeout(20_000)
        expect = playwright_api.expect

        def snap(name: str) -> None:
            page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        page.goto(f"{portal}/")
        snap("01-portal")
        page.get_by_role("link", name="Sign in").click()
        expect(page.get_by_text("Choose a test citizen")).to_be_visible()
        snap("02-sign-in")
        page.get_by_role("button", name="Mari Tamm").click()
        expect(page.get_by_text("Welcome, Mari Tamm")).to_be_visible()

        page.get_by_role("link", name="Start: Apply for a passport").click()
        expect(page.locator("#needs-consent")).to_be_visible()
        snap("03-procedure")
        page.locator("#give-consent").click()
        page.get_by_role("button", name="Mari Tamm").click()  # signing in at the consent service
        expect(page.get_by_role("heading", name="Do you agree?")).to_be_visible()
        expect(page.locator("#terms")).to_contain_text("birth certificate")
        snap("04-consent")
        page.get_by_role("button", name="Yes, I give my consent").click()
        expect(page.get_by_role("heading", name="Consent given")).to_be_visible()
        page.get_by_role("button", name="Return to State Portal").click()
        page.locator("#fetch").click()
        expect(page.locator("#evidence")).to_contain_text("B-1980-000123")
        snap("05-birth-certificate")

        audit = subprocess.run(
            [
                sys.executable,
                "-m",
                "exchange.cli",
                "audit",
                "head",
                "-c",
                str(tmp_path / "demo" / "population-gateway" / "gateway.toml"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert audit.returncode == 0, audit.stderr
        page.goto(f"{portal}/usage")
        row = page.locator("#usages tbody tr").first
        expect(row).to_contain_text("State Portal")
        expect(row).to_contain_text("passport-application")
        # Every register of the demo offers the usage service: none is missing from the list.
        expect(page.get_by_role("alert")).to_have_count(0)
        snap("06-who-accessed-my-data")
        row.get_by_role("button", name="Verify").click()
        expect(page.locator("#verification")).to_contain_text("Verified")
        snap("07-receipt-verified")

        page.goto(f"{consent}/")
        expect(page.locator("[data-status=active]").first).to_be_visible()
        page.get_by_role("button", name="Revoke this consent").first.click()
        expect(page.locator("[data-status=revoked]").first).to_be_visible()
        snap("08-consent-revoked")

        page.goto(f"{portal}/procedures/passport")
        page.locator("#fetch").click()
        expect(page.locator("#refused")).to_contain_text("revoked")
        snap("09-next-fetch-refused")

        # Preview: the diploma is shown to the citizen at the university before it is sent.
        page.goto(f"{portal}/procedures/teaching-position")
        page.locator("#give-consent").click()
        expect(page.locator("#terms")).to_contain_text("before each release")
        page.get_by_role("button", name="Yes, I give my consent").click()
        page.get_by_role("button", name="Return to State Portal").click()
        page.locator("#fetch").click()
        preview = page.locator("#preview-link").get_attribute("href")
        assert preview
        page.goto(preview)
        page.get_by_role("button", name="Mari Tamm").click()  # signing in at the university
        expect(page.locator("#evidence")).to_contain_text("MA-2004-1187")
        snap("10-preview-at-the-university")
        page.get_by_role("button", name="Send this data").click()
        expect(page.get_by_role("heading", name="Approved")).to_be_visible()
        page.goto(f"{portal}/procedures/teaching-position")
        page.locator("#fetch").click()
        expect(page.locator("#evidence")).to_contain_text("Master of Science in Informatics")
        snap("11-diploma-after-approval")
        browser.close()
