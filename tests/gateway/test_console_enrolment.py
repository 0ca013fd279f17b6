"""Keys and certificates without a shell, every role in process: a gateway with no certificates
serves only its setup console (health 503, exchanges refused); its operator generates the keys,
downloads the requests, and enrols with the one-time code of the central authority; refused
codes show the authority's own X-Road error; every step is in the change log with its actor,
the code never. A running gateway's console enrols again (renewal) the same way."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from exchange.db import migrate
from exchange.db.engine import build_engine
from exchange.gateway.changes import ChangeLog
from exchange.gateway.console.app import PUBLIC
from exchange.gateway.console.setup import ROUTES, create_setup_app
from exchange.gateway.console.staff import RIGHTS
from exchange.gateway.settings import GatewaySettings
from exchange.identifiers import GatewayId
from exchange.identity.login import OidcLogin
from exchange.trust.keys import load_private_key
from tests.browser import Browser, hidden_fields
from tests.gateway.conftest import Roles
from tests.gateway.test_console import ROLE_OF, console, signed_in
from tests.servers import EXCHANGE, exchange, free_port

CLIENT = "second-gateway-console"


class Setup:
    """A second gateway of the population register (``gw2``), new: no keys, no certificates."""

    def __init__(self, roles: Roles, folder: Path) -> None:
        self.roles = roles
        self.url = f"http://127.0.0.1:{free_port()}"
        base = roles.provider_settings()
        self.settings: GatewaySettings = base.model_copy(
            update={
                "id": f"{roles.provider.member}/gw2",
                "data_dir": folder,
                "database_url": None,
                "console": base.console.model_copy(
                    update={"public_url": self.url, "client_id": CLIENT}
                ),
            }
        )
        folder.mkdir()
        loopback = roles.roles.loopback
        roles.roles.idp.clients[CLIENT] = [f"{self.url}/console/callback"]
        self.engine = build_engine(self.settings.db_url)
        migrate.upgrade("gateway", self.engine)
        self.enrolled = threading.Event()
        app = create_setup_app(
            self.settings,
            engine=self.engine,
            login=OidcLogin(
                issuer=base.console.issuer or "",
                client_id=CLIENT,
                redirect_uri=f"{self.url}/console/callback",
                transport=loopback.asynchronous(),
                keys_transport=loopback.blocking(),
            ),
            clock=roles.clock,
            enrolled=self.enrolled.set,
            transport=loopback.blocking(),
        )
        loopback.serve(self.url, app, roles.roles.main)

    def signed_in(self, username: str) -> Browser:
        browser = Browser(self.roles.roles.loopback.blocking())
        page = browser.get(f"{self.url}/console/")
        assert 'name="staff"' in page.text, page.text[:2000]
        home = browser.submit(page, f'value="{username}"', staff=username)
        assert home.status_code == 200, home.text[:2000]
        return browser

    def code(self) -> str:
        central = self.roles.roles.central
        address = f"https://127.0.0.1:{free_port()}"
        gateway = GatewayId.parse(self.settings.id)
        return central.enrolments.issue(gateway, address, actor="console:olga").code


@pytest.fixture
def setup(fresh_roles: Roles, tmp_path: Path) -> Setup:
    return Setup(fresh_roles, tmp_path / "gw2")


def refused(answer: httpx.Response, status: int, kind: str) -> None:
    assert answer.status_code == status, answer.text[:2000]
    assert answer.headers["x-road-error"] == kind


def test_the_setup_console_refuses_the_unknown_and_roles_without_the_right(setup: Setup) -> None:
    anonymous = httpx.Client(transport=setup.roles.roles.loopback.blocking(), timeout=30)
    health = anonymous.get(f"{setup.url}/health")
    assert health.status_code == 503
    assert health.json()["reason"] == "not enrolled"
    refused(anonymous.get(f"{setup.url}/r1/EE/GOV/1/x/y"), 503, "Server.ServiceUnavailable")

    served = create_setup_app(
        setup.settings,
        engine=setup.engine,
        login=OidcLogin(issuer="http://unused", client_id="x", redirect_uri="http://unused"),
        clock=setup.roles.clock,
        enrolled=lambda: None,
    )
    mounted = next(r for r in served.routes if getattr(r, "path", "") == "/console")  # type: ignore[attr-defined]
    paths = {
        (method, route.path)
        for route in mounted.app.app.routes  # type: ignore[attr-defined]
        for method in route.methods - {"HEAD"}
    }
    assert paths == {(g.method, g.path) for g in ROUTES} | set(PUBLIC)

    for guard in ROUTES:
        answer = anonymous.request(guard.method, f"{setup.url}/console{guard.path}")
        assert answer.status_code == 303, guard
        assert answer.headers["location"].startswith("/console/login?then=/console"), guard
        assert answer.headers["x-frame-options"] == "DENY", guard
    for username, role in ROLE_OF.items():
        browser = setup.signed_in(username)
        token = hidden_fields(browser.get(f"{setup.url}/console/").text)["csrf"]
        for guard in ROUTES:
            url = f"{setup.url}/console{guard.path}"
            if guard.method == "POST":  # every form needs the session's CSRF token
                forged = browser.http.post(url, data={"csrf": "forged"})
                assert forged.status_code == 403, (username, guard)
            answer = browser.http.request(guard.method, url, data={"csrf": token})
            allowed = guard.right in RIGHTS[role]
            assert (answer.status_code == 403) != allowed, (username, guard, answer.status_code)
        browser.close()
    # Only the operator's request made anything.
    shown, _ = ChangeLog(setup.engine).newest()
    assert [(c.actor, c.action) for c in shown] == [("console:olga", "keys.generated")]


def test_an_operator_generates_the_keys_and_enrols_with_the_authority_code(setup: Setup) -> None:
    olga = setup.signed_in("olga")
    home = olga.get(f"{setup.url}/console/")
    assert "Set up this gateway" in home.text
    assert olga.get(f"{setup.url}/console/certificates/tls.csr").status_code == 404
    forged = olga.post(f"{setup.url}/console/certificates/keys", {"csrf": "forged"})
    assert forged.status_code == 403

    made = olga.submit(home, "Generate the keys")
    assert 'id="done"' in made.text
    folder = setup.settings.data_dir
    for name in ("signing", "tls"):
        assert (folder / f"{name}.key").stat().st_mode & 0o777 == 0o600
    csr = olga.get(f"{setup.url}/console/certificates/tls.csr")
    assert csr.status_code == 200
    assert "attachment" in csr.headers["content-disposition"]
    assert csr.text == (folder / "tls.csr").read_text()
    assert "BEGIN CERTIFICATE REQUEST" in csr.text
    again = olga.post(
        f"{setup.url}/console/certificates/keys", {"csrf": hidden_fields(made.text)["csrf"]}
    )
    refused(again, 409, "Client.Conflict")

    # A code the authority never issued: its own refusal, shown on the console's page.
    wrong = olga.submit(made, 'name="code"', code="AAAA-BBBB-CCCC-DDDD-EEEE-FFFF")
    refused(wrong, 401, "Client.InvalidEnrolmentCode")
    assert "not an enrolment code of this authority" in wrong.text
    assert not (folder / "signing.pem").exists()
    assert not setup.enrolled.is_set()

    code = setup.code()
    enrolled = olga.submit(made, 'name="code"', code=code)
    assert enrolled.status_code == 200, enrolled.text[:2000]
    assert 'id="done"' in enrolled.text
    assert "The certificates are installed" in enrolled.text
    assert setup.enrolled.is_set()  # once answered: the command starts the gateway now
    for name in ("signing", "tls"):
        certificate = x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
        assert certificate.public_key() == load_private_key(folder / f"{name}.key").public_key()
    # The same code sent again, as after an answer lost on its way back: the same certificates
    # (the gateway kept its keys and CSRs), nothing new issued.
    installed = {name: (folder / f"{name}.pem").read_text() for name in ("signing", "tls")}
    issued = len(setup.roles.roles.central.certificates.list())
    repeated = olga.submit(made, 'name="code"', code=code)
    assert repeated.status_code == 200, repeated.text[:2000]
    assert "The certificates are installed" in repeated.text
    assert {name: (folder / f"{name}.pem").read_text() for name in installed} == installed
    assert len(setup.roles.roles.central.certificates.list()) == issued

    shown, _ = ChangeLog(setup.engine).newest()
    assert [(c.actor, c.action) for c in shown] == [
        ("console:olga", "certificates.enrolled"),
        ("console:olga", "certificates.enrolled"),
        ("console:olga", "keys.generated"),
    ]
    assert shown[2].detail == {"keys": ["signing", "tls"]}
    assert code not in repr(shown)
    log = olga.get(f"{setup.url}/console/changes")
    assert "certificates.enrolled" in log.text
    olga.close()


def test_a_running_gateway_enrols_again_for_the_keys_it_has(fresh_roles: Roles) -> None:
    roles = fresh_roles
    olga = signed_in(roles, "olga")
    page = olga.get(f"{console(roles)}/certificates")
    assert 'data-key="signing"' in page.text
    assert "Generate the keys" not in page.text  # it has them
    folder = roles.provider.settings.data_dir
    before = (folder / "tls.pem").read_text()
    central = roles.roles.central
    gateway = GatewayId.parse(roles.provider.settings.id)
    with central.registry.session() as session:
        address = central.registry.gateway(session, gateway).address
    code = central.enrolments.issue(gateway, address, actor="console:olga").code
    renewed = olga.submit(page, 'name="code"', code=code)
    assert 'id="done"' in renewed.text
    assert "from its next start" in renewed.text
    after = (folder / "tls.pem").read_text()
    assert after != before
    key = load_private_key(folder / "tls.key")
    assert x509.load_pem_x509_certificate(after.encode()).public_key() == key.public_key()
    vera = signed_in(roles, "vera")
    assert 'name="code"' not in vera.get(f"{console(roles)}/certificates").text
    olga.close()
    vera.close()


def test_the_command_line_enrols_with_a_code_and_serves_the_setup_console_before(
    fresh_roles: Roles, tmp_path: Path
) -> None:
    """``gateway serve`` of a gateway without certificates serves the setup console alone
    (or, with the console off, says what to do); ``gateway enrol --code`` enrols it."""
    layout = fresh_roles.layout
    port = free_port()
    config = tmp_path / "gw2.toml"
    text = (
        layout.provider.read_text()
        .replace('id = "EE/GOV/70000310/gw1"', 'id = "EE/GOV/70000310/gw2"')
        .replace('data_dir = "data"', f'data_dir = "{tmp_path / "gw2"}"')
        .replace(
            'anchor = "../central/anchor.json"',
            f'anchor = "{layout.central.data_dir / "anchor.json"}"',
        )
    )
    consumer = fresh_roles.provider_settings().consumer.port
    config.write_text(text.replace(f"port = {consumer}\n", f"port = {port}\n", 1))
    assert GatewaySettings.load(config).consumer.port == port
    off = tmp_path / "off.toml"
    off.write_text(config.read_text().replace("enabled = true", "enabled = false"))
    refused_start = exchange("gateway", "serve", "-c", str(off))
    assert refused_start.returncode == 1
    assert "holds no certificates" in refused_start.stderr

    log = tmp_path / "setup.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*EXCHANGE, "gateway", "serve", "-c", str(config)], stdout=sink, stderr=sink
        )
    try:
        health = None
        deadline = time.monotonic() + 30
        while health is None and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            time.sleep(0.05)
        assert health is not None, log.read_text()
        assert (health.status_code, health.json()["reason"]) == (503, "not enrolled")
        page = httpx.get(f"http://127.0.0.1:{port}/console/certificates", timeout=5)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/console/login")
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 1  # stopped before it was enrolled

    assert exchange("gateway", "init", "-c", str(config)).returncode == 0
    issued = exchange(
        "central",
        "gateway",
        "code",
        "EE/GOV/70000310/gw2",
        "--address",
        "https://127.0.0.1:1",
        "--data-dir",
        str(layout.central.data_dir),
    )
    assert issued.returncode == 0, issued.stderr
    code = issued.stdout.strip()
    assert "valid once until" in issued.stderr
    enrolled = exchange("gateway", "enrol", "-c", str(config), "--code", code)
    assert enrolled.returncode == 0, enrolled.stderr
    tls = (tmp_path / "gw2" / "tls.pem").read_text()
    # Run again, as after an answer lost on the way: the same certificates, nothing new.
    again = exchange("gateway", "enrol", "-c", str(config), "--code", code)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "gw2" / "tls.pem").read_text() == tls
    # With other keys the code is spent: the authority's refusal, as it said it.
    (tmp_path / "gw2" / "tls.key").unlink()
    (tmp_path / "gw2" / "tls.csr").unlink()
    assert exchange("gateway", "init", "-c", str(config)).returncode == 0
    used = exchange("gateway", "enrol", "-c", str(config), "--code", code)
    assert used.returncode == 1
    assert "this enrolment code was used already" in used.stderr
