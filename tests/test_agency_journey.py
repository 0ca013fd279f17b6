"""An agency's journey from nothing to a published service, in a real browser (Debian's
Chromium via Playwright), against real servers on loopback ports: the authority (its console
on), the identity provider with staff, the state portal's gateway as the consumer, and the new
agency's gateway started by ``exchange gateway serve`` on an empty data folder.

1. the agency applies for membership, and for its subsystem, on the authority's page;
2. the authority's operator approves both in the central console, the membership with the
   gateway's address, which issues its one-time enrolment code; the agency reads the code on
   its private application page;
3. the agency's operator opens the gateway's setup console, generates the keys and enrols with
   the code; the gateway starts by itself and its certificates page shows them valid;
4. the operator declares a SQL-backed service over the agency's register, tests its
   connection, declares and publishes it, grants the state portal access; the portal's first
   exchange through its gateway is answered, and the operator sees it in the operations view
   and the auditor in the audit log, with the chain verified.

Steps 1-3 are one test, step 4 the next (it goes on from where the first left the gateway).

Every page on the way is checked with axe-core (WCAG 2.2 A and AA and best practices, as in the
citizen's journey); the problems of all pages are reported together at the end. A screenshot of
each step goes to ``EXCHANGE_SCREENSHOTS`` (``make screenshots``) or to the
module's temporary folder. Skipped when Chromium is not installed, unless
``EXCHANGE_REQUIRE_BROWSER`` is set. Everything listens on loopback; every wait is bounded
(Playwright's default timeout, the module's pytest timeout, the servers' start-up bounds).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.identifiers import GatewayId, MemberId
from exchange.sample import business, federation
from tests.servers import EXCHANGE, free_port, serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api")
if os.environ.get("EXCHANGE_REQUIRE_BROWSER"):  # a missing checker fails here, never skips
    axe_api = importlib.import_module("axe_playwright_python.base")
else:
    axe_api = pytest.importorskip("axe_playwright_python.base")
if not Path(CHROMIUM).exists():
    if os.environ.get("EXCHANGE_REQUIRE_BROWSER"):
        raise RuntimeError(f"Chromium is required here but {CHROMIUM} is missing")
    pytest.skip("Chromium is not installed", allow_module_level=True)
pytestmark = pytest.mark.timeout(300)
# WCAG 2.0, 2.1 and 2.2, levels A and AA, and axe's best practices, as the citizen's journey.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]

AGENCY = MemberId.parse("EE/GOV/70000777")
AGENCY_NAME = "Commercial Register"
SUBSYSTEM = f"{AGENCY}/company-registry"
GATEWAY = GatewayId(AGENCY, "gw1")
SERVICE_CODE = "company-registration"
CONSOLE_CLIENT = federation.console_client("commercial-gateway")


@dataclass
class Agency:
    """The running servers and where the agency's gateway listens."""

    folder: Path
    central: str
    gateway: str  # the agency gateway's consumer listener (its console is under /console)
    tls_port: int
    consumer: str  # the state portal's gateway
    register: Path  # the agency's own registry (SQLite), behind the service it declares
    process: Any  # the agency's ``gateway serve``
    log: Path


def _wait_for(url: str, *, status: int, within: float, log: Path, process: Any) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == status:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer {status} within {within} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agency]:
    import subprocess

    base = tmp_path_factory.mktemp("agency")
    ports = federation.Ports(*(free_port() for _ in range(10)))
    layout = federation.create(base / "federation", ports)
    register = business.create(base / "registries" / "companies.db")
    # The consumer learns of the new gateway and its service at its next refresh: soon.
    consumer_toml = layout.consumer.read_text()
    layout.consumer.write_text(
        consumer_toml.replace("\n[consumer]", "globalconf_refresh = 1\n\n[consumer]", 1)
    )
    agency_consumer, agency_tls = free_port(), free_port()
    # The identity provider knows the new gateway's console as a client, as an agency's own
    # issuer would be told of it.
    document = json.loads((layout.idp / "idp.json").read_text())
    document["clients"][CONSOLE_CLIENT] = [f"http://127.0.0.1:{agency_consumer}/console/callback"]
    (layout.idp / "idp.json").write_text(json.dumps(document, indent=2))
    folder = layout.base / "commercial-gateway"
    folder.mkdir()
    issuer = f"http://127.0.0.1:{ports.idp}"
    config = folder / "gateway.toml"
    config.write_text(
        federation.gateway_toml(
            gateway=GATEWAY,
            subsystems=["company-registry"],
            ports=(agency_consumer, agency_tls),
            extra="globalconf_refresh = 1\n",
            services=(
                f'\n[console]\nenabled = true\npublic_url = "http://127.0.0.1:{agency_consumer}"\n'
                f'issuer = "{issuer}"\njwks_url = "{issuer}/jwks"\n'
                f'client_id = "{CONSOLE_CLIENT}"\n'
            ),
        )
    )
    logs = base / "logs"
    logs.mkdir()
    # The authority's console, as the demo turns it on (its settings come from the environment).
    console = {
        f"EXCHANGE_CENTRAL_CONSOLE_{key.upper()}": str(value).lower()
        if isinstance(value, bool)
        else str(value)
        for key, value in federation.central_console(ports).items()
    }
    with contextlib.ExitStack() as stack:
        for name, args, port in (
            ("idp", ["idp", "serve", "--data-dir", str(layout.idp)], ports.idp),
            ("tsa", ["tsa", "serve", "--data-dir", str(layout.tsa)], ports.tsa),
            (
                "central",
                ["central", "serve", "--data-dir", str(layout.central.data_dir)],
                ports.central,
            ),
            ("consumer", ["gateway", "serve", "-c", str(layout.consumer)], ports.consumer_consumer),
        ):
            if name in ("idp", "tsa", "central"):
                args = [*args, "--port", str(port)]
            health = f"http://127.0.0.1:{port}/health"
            env = console if name == "central" else None
            stack.enter_context(serving(args, health_url=health, env=env, log=logs / f"{name}.log"))
        log = logs / "commercial-gateway.log"
        sink = stack.enter_context(log.open("wb"))
        process = subprocess.Popen(
            [*EXCHANGE, "gateway", "serve", "-c", str(config)], stdout=sink, stderr=sink
        )
        gateway = f"http://127.0.0.1:{agency_consumer}"
        try:
            # Not enrolled: the setup console alone, health 503 until staff enrol it.
            _wait_for(f"{gateway}/health", status=503, within=60, log=log, process=process)
            yield Agency(
                folder=base,
                central=f"http://127.0.0.1:{ports.central}",
                gateway=gateway,
                tls_port=agency_tls,
                consumer=f"http://127.0.0.1:{ports.consumer_consumer}",
                register=register,
                process=process,
                log=log,
            )
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(agency: Agency) -> Path:
    target = Path(os.environ.get("EXCHANGE_SCREENSHOTS") or agency.folder / "screenshots")
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    # The pages forbid scripts; axe is injected by the test's browser context alone.
    context = browser.new_context(
        viewport={"width": 1100, "height": 800}, locale="en", bypass_csp=True
    )
    context.set_default_timeout(20_000)
    context.add_init_script(script=axe_api.AXE_SCRIPT)
    made = context.new_page()
    yield made
    context.close()


def _accessible(page: Any, where: str, problems: list[str]) -> None:
    """What axe finds on the page now, added to ``problems``."""
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}
    found = axe_api.AxeResults(page.evaluate("(o) => axe.run(document, o)", options))
    if found.violations_count:
        problems.append(f"{where}: {found.generate_report()}")


def _staff(page: Any, username: str) -> None:
    """On the identity provider's page, sign in as staff member ``username``."""
    page.locator(f'button[name="staff"][value="{username}"]').click()


def _apply(page: Any, agency: Agency, kind: str, identifier: str, name: str = "") -> None:
    page.goto(f"{agency.central}/apply/")
    page.locator(f'input[name="kind"][value="{kind}"]').check()
    page.get_by_label("Identifier").fill(identifier)
    if name:
        page.get_by_label("The member's name (for membership)").fill(name)
    page.get_by_label("Contact (how the authority replies)").fill("it@commercial.example")
    page.get_by_role("button", name="Apply", exact=True).click()
    playwright_api.expect(page.get_by_role("status")).to_contain_text("waits for the authority")


def _approve(page: Any, identifier: str) -> None:
    row = page.locator("#pending tr", has_text=identifier)
    row.get_by_role("button", name="Approve").click()
    playwright_api.expect(page.locator("#done")).to_be_visible()
    playwright_api.expect(page.locator("#decided")).to_contain_text(identifier)


def test_an_agency_applies_is_approved_and_enrols_its_gateway_in_the_browser(
    agency: Agency, page: Any, shots: Path
) -> None:
    expect = playwright_api.expect
    problems: list[str] = []
    page.goto(f"{agency.central}/apply/")
    _accessible(page, "apply", problems)
    _apply(page, agency, "member", str(AGENCY), AGENCY_NAME)
    page.screenshot(path=str(shots / "20-agency-applies.png"), full_page=True)
    _accessible(page, "application received", problems)
    private = page.locator("#receipt").get_attribute("href")  # the applicant keeps it

    # The authority's operator approves the membership with its gateway in the central
    # console, and is shown the gateway's one-time enrolment code once.
    page.goto(f"{agency.central}/console/")
    _staff(page, "olga")
    expect(page.locator("#pending")).to_contain_text(str(AGENCY))
    row = page.locator("#pending tr", has_text=str(AGENCY))
    row.locator("summary").click()
    row.get_by_label("Gateway code").fill(GATEWAY.gateway_code)
    row.get_by_label("Address").fill(f"https://127.0.0.1:{agency.tls_port}")
    page.screenshot(path=str(shots / "21-authority-approves.png"), full_page=True)
    _accessible(page, "central console: applications", problems)
    row.get_by_role("button", name="Approve").click()
    shown = page.locator("#code").inner_text().strip()
    assert len(shown.replace("-", "")) == 24
    _accessible(page, "central console: enrolment code", problems)

    # Now a member, the agency applies for its subsystem; the operator approves that too.
    _apply(page, agency, "subsystem", SUBSYSTEM)
    page.goto(f"{agency.central}/console/")
    _approve(page, SUBSYSTEM)
    page.goto(f"{agency.central}/console/members")
    expect(page.locator(f'tr[data-member="{AGENCY}"]')).to_contain_text(SUBSYSTEM)
    _accessible(page, "central console: members", problems)

    # The agency reads the code on its own private page.
    page.goto(f"{agency.central}{private}")
    expect(page.locator("#application")).to_have_attribute("data-status", "approved")
    code = page.locator("#codes code.code").inner_text().strip()
    assert code == shown
    page.screenshot(path=str(shots / "22-enrolment-code.png"), full_page=True)
    _accessible(page, "the applicant's page", problems)

    # The agency's operator, at the gateway's setup console: keys, then the code.
    page.goto(f"{agency.gateway}/console/")
    _staff(page, "olga")
    expect(page.get_by_role("heading", name="Set up this gateway")).to_be_visible()
    page.get_by_role("button", name="Generate the keys").click()
    expect(page.locator("#done")).to_contain_text("certificate requests are made")
    page.get_by_label("Enrolment code").fill(code)
    page.screenshot(path=str(shots / "23-gateway-setup.png"), full_page=True)
    _accessible(page, "gateway setup console", problems)
    page.get_by_role("button", name="Enrol", exact=True).click()
    expect(page.locator("#done")).to_contain_text("The certificates are installed")

    # The command starts the gateway itself; its console shows the certificates valid.
    _wait_for(
        f"{agency.gateway}/health", status=200, within=60, log=agency.log, process=agency.process
    )
    page.goto(f"{agency.gateway}/console/certificates")
    if page.locator('button[name="staff"]').count():  # a new session after the restart
        _staff(page, "olga")
    for purpose in ("signing", "tls"):
        expect(page.locator(f'tr[data-purpose="{purpose}"]')).to_have_attribute(
            "data-status", "valid"
        )
    page.screenshot(path=str(shots / "24-gateway-enrolled.png"), full_page=True)
    _accessible(page, "gateway console: certificates", problems)

    page.goto(f"{agency.gateway}/console/changes")
    expect(page.locator("#changes")).to_contain_text("certificates.enrolled")
    expect(page.locator("#changes")).to_contain_text("console:olga")
    assert not problems, "\n\n".join(problems)


def test_the_agency_publishes_a_service_and_sees_its_first_exchange(
    agency: Agency, page: Any, shots: Path
) -> None:
    expect = playwright_api.expect
    problems: list[str] = []
    page.goto(f"{agency.gateway}/console/")
    if page.locator('button[name="staff"]').count():
        _staff(page, "olga")

    # A SQL-backed service over the agency's own register, its connection tested first.
    page.goto(f"{agency.gateway}/console/services")
    page.locator("#declare").click()
    form = page.locator("#service")
    form.locator('select[name="subsystem"]').select_option("company-registry")
    form.locator('input[name="code"]').fill(SERVICE_CODE)
    form.locator('select[name="evidence_type"]').select_option("business-registration")
    form.locator('input[name="description"]').fill(
        "company registrations from the commercial register"
    )
    form.locator('input[name="parameters"]').fill("code")
    form.locator('input[name="subject_parameter"]').fill("")
    form.locator('input[name="methods"][value="GET"]').check()
    form.locator('select[name="consent_policy"]').select_option("public")
    form.locator('select[name="connector_type"]').select_option("sql")
    form.locator('input[name="connector_url"]').fill(f"sqlite:///{agency.register}")
    form.locator('textarea[name="connector_query"]').fill(business.REGISTRATION_QUERY)
    fields = "\n".join(f"{k} = {v}" for k, v in business.REGISTRATION_FIELDS.items())
    form.locator('textarea[name="connector_fields"]').fill(fields)
    form.locator('input[name="json_columns"]').fill("board")
    page.locator("#test").click()
    expect(page.locator("#tested")).to_have_attribute("data-ok", "yes")
    page.screenshot(path=str(shots / "25-service-tested.png"), full_page=True)
    _accessible(page, "gateway console: a service declared and tested", problems)
    page.locator("#save").click()
    expect(page.locator("#done")).to_be_visible()
    _accessible(page, "gateway console: services", problems)
    service = f"{AGENCY}/company-registry/{SERVICE_CODE}"
    declared = page.locator(f'tr[data-service="company-registry/{SERVICE_CODE}"]')
    expect(declared).to_have_attribute("data-enabled", "yes")
    page.locator("#publish").click()
    expect(page.locator("#done")).to_contain_text("catalogue")

    # The state portal may ask for it.
    page.goto(f"{agency.gateway}/console/access")
    grant = page.locator("#grant")
    grant.locator('select[name="service"]').select_option(service)
    grant.locator('input[name="subject"]').fill(str(federation.CITIZEN_PORTAL))
    grant.get_by_role("button", name="Grant").click()
    expect(page.locator("#grants")).to_contain_text(str(federation.CITIZEN_PORTAL))
    page.screenshot(path=str(shots / "26-access-granted.png"), full_page=True)
    _accessible(page, "gateway console: access rights", problems)

    # The consumer's first exchange, through its own gateway, once both know the new service.
    company = business.COMPANIES[0][0]
    answer = _first_exchange(agency, f"/r1/{AGENCY}/company-registry/{SERVICE_CODE}?code={company}")
    assert company in answer.text

    # Operational records are written in batches, a moment after the exchange.
    deadline = time.monotonic() + 30
    page.goto(f"{agency.gateway}/console/operations?minutes=15")
    while service not in page.locator("#pairs").inner_text() and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(page.locator("#pairs")).to_contain_text(service)
    assert int(page.locator("#exchanges").inner_text().replace(",", "")) >= 1
    page.screenshot(path=str(shots / "27-operations.png"), full_page=True)
    _accessible(page, "gateway console: operations", problems)

    # The auditor sees the exchange in the audit log, and the chain verified.
    page.locator("form", has=page.get_by_role("button", name="Sign out")).get_by_role(
        "button", name="Sign out"
    ).click()
    page.goto(f"{agency.gateway}/console/audit")
    _staff(page, "aivar")
    expect(page.locator("#records")).to_contain_text(service)
    expect(page.locator("#records")).to_contain_text(str(federation.CITIZEN_PORTAL))
    page.locator("#verify").click()
    expect(page.locator("#verified")).to_be_visible()
    page.screenshot(path=str(shots / "28-audit-verified.png"), full_page=True)
    _accessible(page, "gateway console: audit chain verified", problems)
    assert not problems, "\n\n".join(problems)


def _first_exchange(agency: Agency, path: str) -> httpx.Response:
    """The portal's call through its gateway, asked again (bounded) until both gateways hold a
    configuration that lists the new service and its gateway."""
    headers = {
        "X-Road-Client": str(federation.CITIZEN_PORTAL),
        "X-Exchange-Purpose": "company-check",
    }
    deadline = time.monotonic() + 60
    while True:
        headers["X-Road-Id"] = f"journey-{time.monotonic_ns()}"
        answer = httpx.get(f"{agency.consumer}{path}", headers=headers, timeout=30)
        if answer.status_code == 200 or time.monotonic() > deadline:
            assert answer.status_code == 200, answer.text
            return answer
        time.sleep(0.5)
