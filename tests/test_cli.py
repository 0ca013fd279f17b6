"""The command line as an operator meets it: help that explains, errors as one line."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import urllib.request
from pathlib import Path

import httpx
import pytest

from exchange.cli import demo
from exchange.evidence.edm.answers import split_related
from exchange.sample import documents, federation, oots
from tests.browser import Browser, form_with
from tests.oots import available
from tests.servers import exchange, free_ports, serving


@pytest.mark.parametrize(
    "group",
    [[], ["central"], ["central", "member"], ["central", "cert"], ["keys"], ["globalconf"]],
)
def test_help_is_available_everywhere(group: list[str]) -> None:
    result = exchange(*group, "--help")
    assert result.returncode == 0
    assert "Usage: exchange" in result.stdout


def test_refusals_are_one_line_with_nonzero_exit(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "c")]
    assert exchange("central", "init", "--instance", "EE", *data).returncode == 0

    cases = [
        (["central", "init", "--instance", "EE", *data], "already holds a central authority"),
        (["central", "member", "add", "EE/GOV/1%2F", "--name", "x", *data], "percent-encoded"),
        (
            ["central", "member", "add", "EE/XYZ/1", "--name", "x", *data],
            "member class 'XYZ' is not defined",
        ),
        (
            ["central", "subsystem", "add", "EE/GOV/9/sub", *data],
            "member EE/GOV/9 is not registered",
        ),
        (["central", "cert", "revoke", "ABC", *data], "no certificate with serial ABC"),
        (
            ["central", "member", "list", "--data-dir", str(tmp_path / "none")],
            "no central authority in",
        ),
        (
            ["central", "init", "--instance", "E E", "--data-dir", str(tmp_path / "d")],
            "instance 'E E'",
        ),
        (
            ["demo", "--data-dir", str(tmp_path / "demo"), "--oots-edm", str(tmp_path / "edm")],
            "edm does not exist: install the OOTS EDM v1.0 schema set",
        ),
    ]
    for args, message in cases:
        result = exchange(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: ")
        assert message in lines[0]
    assert not (tmp_path / "demo").exists()  # a demo refused makes nothing


def test_usage_mistakes_exit_2() -> None:
    result = exchange("central", "member", "add")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_member_side_csr_flow_through_the_cli(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "c")]
    steps = [
        ["central", "init", "--instance", "EE", *data],
        ["central", "member", "add", "EE/GOV/70000310", "--name", "Population Register", *data],
        ["keys", "generate", "--key", str(tmp_path / "m.key"), "--csr", str(tmp_path / "m.csr")],
        [
            "central",
            "cert",
            "sign",
            "EE/GOV/70000310",
            "--csr",
            str(tmp_path / "m.csr"),
            "-o",
            str(tmp_path / "m.pem"),
            *data,
        ],
    ]
    for step in steps:
        result = exchange(*step)
        assert result.returncode == 0, (step, result.stderr)
    assert (tmp_path / "m.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "c" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "c" / "admin-token").stat().st_mode & 0o777 == 0o600
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "c" / "ca.pem"), str(tmp_path / "m.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    again = exchange(
        "keys", "generate", "--key", str(tmp_path / "m.key"), "--csr", str(tmp_path / "x.csr")
    )
    assert again.returncode == 1  # never overwrite a private key
    assert "File exists" in again.stderr


MAIL = b"Subject: Your data was used\r\n\r\nA register released your birth certificate.\r\n"


def test_demo_comes_up_serves_evidence_resumes_and_stops_cleanly(tmp_path: Path) -> None:
    base = free_ports(demo.ALL_OFFSETS)
    args = ["demo", "--data-dir", str(tmp_path / "demo"), "--port", str(base)]
    material = available()
    if material is not None:  # with the OOTS EDM walkthrough (docs/oots.md)
        args += ["--oots-edm", str(material)]
    health = f"http://127.0.0.1:{base + 20}/health"
    evidence = (
        f"http://127.0.0.1:{base + 20}/r1/EE/GOV/70000310/population-registry/residence-record/v1"
        "?person=EE38001085718"
    )
    client = {
        "X-Road-Client": "EE/GOV/70000001/citizen-portal",
        "X-Exchange-Purpose": "residence-check",
    }
    birth = evidence.replace("residence-record/v1", "birth-certificate/v1")
    # Every role of a federation starts in one process: on two shared, busy cores that takes
    # longer than one server's usual 30 s.
    up = {"health_url": health, "ready_within": 90}
    with serving(args, log=tmp_path / "first.log", **up) as process:
        answer = httpx.get(evidence, headers=client, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["ResidenceRecord"]["givenName"] == "Mari"
        # A client that sends no Accept (Python's urllib): the consumer gateway signs exactly
        # what it sends, so the provider finds the request as signed (no "accept differs").
        bare = urllib.request.Request(evidence, headers=client)
        with urllib.request.urlopen(bare, timeout=10) as plain:  # noqa: S310 (loopback)
            assert plain.status == 200
            assert json.loads(plain.read())["ResidenceRecord"]["givenName"] == "Mari"
        # HEAD through real servers (which send no body): signed over no body, so no false
        # alarm; the residence service accepts GET only, so the provider refuses it.
        head = httpx.head(evidence, headers=client, timeout=10)
        assert head.status_code == 405, head.headers
        assert head.headers["X-Road-Error"] == "Server.ServerProxy.InvalidHttpMethod"
        unconsented = httpx.get(birth, headers=client, timeout=10)
        assert unconsented.status_code == 403
        # The central console signs the operator Olga in at the demo's identity provider.
        staff = httpx.Client(follow_redirects=True, timeout=10)
        page = staff.get(f"http://127.0.0.1:{base}/console/")
        assert 'value="olga"' in page.text, page.text[:2000]
        home = staff.post(
            str(page.url.join(form_with(page.text, 'value="olga"')[0])),
            data={**form_with(page.text, 'value="olga"')[1], "staff": "olga"},
        )
        assert "Olga Oja" in home.text
        assert 'id="pending"' in home.text
        staff.close()
        assert unconsented.json()["type"] == "Server.ServerProxy.ConsentRequired"
        portal = httpx.get(f"http://127.0.0.1:{base + 50}/", timeout=10)
        assert "Sign in" in portal.text
        # The portal's e-mails to citizens go to the demo's own mailbox, filed privately.
        with smtplib.SMTP("127.0.0.1", base + 90, timeout=10) as smtp:
            smtp.sendmail("portal@demo.invalid", ["mari@demo.invalid"], MAIL)
        (filed,) = (tmp_path / "demo" / "mail").glob("*.eml")
        assert filed.read_bytes() == MAIL
        assert filed.stat().st_mode & 0o777 == 0o600
        # The staff console on the gateway's loopback listener: sign in first, at the IdP.
        console = httpx.get(f"http://127.0.0.1:{base + 20}/console/", timeout=10)
        assert console.status_code == 303
        assert console.headers["location"].startswith("/console/login")
        signing_in = httpx.get(
            f"http://127.0.0.1:{base + 20}{console.headers['location']}", timeout=10
        )
        assert signing_in.headers["location"].startswith(f"http://127.0.0.1:{base + 40}/authorize")
        if material is not None:
            walk_through_edm(tmp_path / "demo" / "edm", base)
    assert process.returncode == 0
    first = (tmp_path / "first.log").read_text()
    if material is not None:
        assert f"sh {tmp_path / 'demo' / 'edm' / 'birth.sh'}" in first
        assert "/dsd/rest/search?queryId=" in first
    assert "initialised instance EE" in first
    assert f"E-mails to citizens (opt in under Notifications) land in {tmp_path / 'demo'}" in first
    assert "curl -H 'X-Road-Client: EE/GOV/70000001/citizen-portal'" in first
    assert f"http://127.0.0.1:{base + 20}/console/" in first
    assert "demo stopped" in first
    # The one warning the demo gives on purpose: the EDM rules it waives (exchange/sample/oots.py).
    warnings = [line for line in first.splitlines() if "warning" in line]
    assert all("edm.rules_waived" in line for line in warnings), warnings
    anchor = str(tmp_path / "demo" / "central" / "anchor.json")
    fetched = exchange("globalconf", "fetch", "--anchor", anchor)
    assert fetched.returncode == 1  # the authority is stopped: a clear refusal, not a traceback
    assert "central authority cannot be reached" in fetched.stderr
    with serving(args, log=tmp_path / "second.log", **up):
        fetched = exchange("globalconf", "fetch", "--anchor", anchor)
        assert fetched.returncode == 0, fetched.stderr
        assert "instance EE, version" in fetched.stdout
        assert httpx.get(evidence, headers=client, timeout=10).status_code == 200
    assert "resuming the demo" in (tmp_path / "second.log").read_text()


def walk_through_edm(folder: Path, base: int) -> None:
    """The demo's OOTS EDM walkthrough, as its text tells a user to run it."""
    # The Data Service Directory finds the birth certificate's provider and its service.
    found = httpx.get(oots.directory_query(f"http://127.0.0.1:{base}"), timeout=10)
    assert found.status_code == 200, found.text
    assert b"EE/GOV/70000310/population-registry/birth-certificate-oots" in found.content
    # A company extract for a legal person, posted as the walkthrough's curl posts it.
    company = subprocess.run(
        [
            "curl",
            "-s",
            "-w",
            "\nHTTP %{http_code}\n",
            "-H",
            "X-Road-Client: EE/GOV/70000001/citizen-portal",
            "-H",
            "Content-Type: application/x-ebrs+xml",
            "--data-binary",
            f"@{folder / 'company-request.xml'}",
            f"http://127.0.0.1:{base + 20}/r1/{federation.BUSINESS_REGISTRY}/{oots.COMPANY_CODE}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert company.stdout.endswith("HTTP 200\n"), company.stdout[-2000:]
    assert "<registryCode>10137319</registryCode>" in company.stdout
    # The same extract as a PDF, its distribution asked for: the register's document, streamed.
    as_pdf = httpx.post(
        f"http://127.0.0.1:{base + 20}/r1/{federation.BUSINESS_REGISTRY}/{oots.COMPANY_CODE}",
        headers={
            "X-Road-Client": "EE/GOV/70000001/citizen-portal",
            "Content-Type": "application/x-ebrs+xml",
        },
        content=(folder / "company-request-pdf.xml").read_bytes(),
        timeout=30,
    )
    assert as_pdf.status_code == 200, as_pdf.text[-2000:]
    (_, response), (kind, extract) = split_related(
        as_pdf.headers["content-type"], as_pdf.content
    ).values()
    assert b"<sdg:Format>application/pdf</sdg:Format>" in response
    assert (kind, extract) == ("application/pdf", documents.extract("10137319"))
    # Mari Tamm's birth certificate: PreviewRequired and the page, she approves, then exactly it.
    first = subprocess.run(
        ["sh", str(folder / "birth.sh")], capture_output=True, text=True, check=True
    )
    assert "HTTP 428" in first.stdout, first.stdout[-2000:]
    page = first.stdout.rsplit("Open ", 1)[1].split(",", 1)[0]
    assert page.startswith(f"http://127.0.0.1:{base + 12}/preview/")
    assert (folder / "consent.jws").stat().st_mode & 0o777 == 0o600
    browser = Browser()
    try:
        shown = browser.sign_in(browser.get(page), "EE38001085718")
        assert browser.submit(shown, 'value="approved"', decision="approved").status_code == 200
    finally:
        browser.close()
    second = subprocess.run(
        ["sh", str(folder / "birth.sh"), page], capture_output=True, text=True, check=True
    )
    assert second.stdout.endswith("HTTP 200\n"), second.stdout[-2000:]
    assert "<personCode>EE38001085718</personCode>" in second.stdout


HELP_FOR_EVERY_COMMAND = """
from typer.main import get_command
from exchange.cli.main import app

root = get_command(app)
paths = []

def walk(command, path):
    paths.append(path)
    for name, sub in getattr(command, "commands", {}).items():
        walk(sub, [*path, name])

walk(root, [])
for path in paths:
    try:
        root.main(args=[*path, "--help"], prog_name="exchange")
    except SystemExit as ended:
        if ended.code:
            raise
print("commands:", len(paths))
"""


def test_every_command_has_help() -> None:
    """``--help`` works for every command and group, rendered as users see it (help text must
    not be read as markup); one interpreter walks them all."""
    result = subprocess.run(
        [sys.executable, "-c", HELP_FOR_EVERY_COMMAND],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.rsplit("commands:", 1)[1]) > 40


def test_gateway_serve_offers_workers_and_hides_what_only_its_parent_passes() -> None:
    shown = exchange("gateway", "serve", "--help", env={"COLUMNS": "200"})
    assert shown.returncode == 0
    assert "--workers" in shown.stdout
    assert "--listen-fds" not in shown.stdout
    assert "--ready-fd" not in shown.stdout
