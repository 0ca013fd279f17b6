"""Services from the gateway console, in process: an operator declares a SQL-backed service and a
consumer calls it through the gateway pair at once; a bad declaration is shown on the form and
nothing is stored; "test the connection" says what it found or what is wrong; a disabled
service is refused as an unknown one; publishing (signed with the gateway's key, no token)
puts the service in the central catalogue;
every change is in the change log with its actor, and the settings file's services stay
read-only."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from exchange.gateway import models
from exchange.gateway.declared import SYNC_INTERVAL, hide_password, keep_password, shown
from exchange.gateway.settings import ServiceSpec
from exchange.sample import federation, population
from tests.browser import Browser
from tests.gateway.conftest import MARI, PORTAL_CLIENT, Roles, Running
from tests.gateway.test_console import change_rows, console, signed_in
from tests.servers import exchange, free_port

# Commands run as processes of their own, each starting an interpreter: slow on a busy machine.
pytestmark = pytest.mark.timeout(300)
CODE = "residence-copy"
COPY = f"/r1/{federation.POPULATION_REGISTRY}/{CODE}"
RESIDENCE = {"X-Road-UserId": MARI, "X-Exchange-Purpose": "residence-check"}


def declaration(roles: Roles, **changed: str) -> dict[str, str]:
    """The form's fields for a public copy of the residence record, read from the register."""
    fields = "\n".join(f"{k} = {v}" for k, v in population.RESIDENCE_FIELDS.items())
    return {
        "subsystem": "population-registry",
        "code": CODE,
        "evidence_type": "residence-record",
        "description": "residence record, declared from the console",
        "consent_policy": "public",
        "parameters": "person",
        "subject_parameter": "person",
        "methods": "GET",
        "connector_type": "sql",
        "connector_url": f"sqlite:///{roles.layout.registry}",
        "connector_query": population.RESIDENCE_QUERY,
        "connector_fields": fields,
        "timeout": "5",
        **changed,
    }


def declared_rows(roles: Roles) -> int:
    with Session(roles.provider.engine) as session:
        return session.scalar(select(func.count()).select_from(models.DeclaredService)) or 0


def test_an_operator_declares_tests_disables_and_publishes_a_service(roles: Roles) -> None:
    olga = signed_in(roles, "olga")
    listed = olga.get(f"{console(roles)}/services")
    birth = 'data-service="population-registry/birth-certificate" data-source="file"'
    assert birth in listed.text  # the settings file's, read-only: no edit link for it
    assert "services/edit?subsystem=population-registry&amp;code=birth-certificate" not in (
        listed.text
    )
    form = olga.get(f"{console(roles)}/services/new")
    assert form.status_code == 200

    # A query binding a parameter the service does not declare: said on the form, not stored.
    wrong = declaration(roles, parameters="code")
    refused = send(olga, roles, form, "declare", wrong)
    assert refused.status_code == 400
    assert 'id="problem"' in refused.text
    assert "query binds" in refused.text
    assert declared_rows(roles) == 0
    assert 'value="code"' in refused.text  # what was sent is shown again
    own = declaration(roles, connector_url=roles.provider.settings.db_url)
    snooping = send(olga, roles, form, "declare", own)
    assert snooping.status_code == 400
    assert "the gateway&#39;s own database" in snooping.text
    imported = send(olga, roles, form, "declare", declaration(roles, connector_type="python"))
    assert imported.status_code == 400
    assert "sql and http connectors only" in imported.text
    assert declared_rows(roles) == 0

    # Test the connection before saving: a missing table is named, the right query works.
    broken = declaration(roles, connector_query="SELECT * FROM nowhere WHERE code = :person")
    failed = send(olga, roles, refused, "test", broken)
    assert 'data-ok="no"' in failed.text
    assert "no such table: nowhere" in failed.text
    assert "Traceback" not in failed.text
    tested = send(olga, roles, failed, "test", declaration(roles))
    assert 'data-ok="yes"' in tested.text, tested.text[:3000]
    assert declared_rows(roles) == 0  # testing stores nothing

    # An HTTP connector is tested on its backend's base address; a backend gone is said so.
    backend = {
        "connector_type": "http",
        "connector_url": f"{roles.registry.url}/diplomas/{{person}}",
        "connector_query": "",
        "connector_fields": "",
        "evidence_type": "diploma",
    }
    calls = roles.registry.calls
    reached = send(olga, roles, tested, "test", declaration(roles, **backend))
    assert 'data-ok="yes"' in reached.text, reached.text[:3000]
    assert roles.registry.calls == calls  # no record asked for
    gone = {**backend, "connector_url": f"http://127.0.0.1:{free_port()}/diplomas/{{person}}"}
    unreachable = send(olga, roles, tested, "test", declaration(roles, **gone))
    assert 'data-ok="no"' in unreachable.text
    assert "the backend cannot be reached" in unreachable.text

    # Declared: served at once, to a client granted access.
    done = send(olga, roles, tested, "declare", declaration(roles))
    assert 'id="done"' in done.text, done.text[:3000]
    roles.provider.access.grant(
        service=f"{federation.POPULATION_REGISTRY}/{CODE}", subject=PORTAL_CLIENT, actor="test"
    )
    answer = roles.call(f"{COPY}?person={MARI}", headers=RESIDENCE)
    assert answer.status_code == 200, answer.text
    assert MARI in answer.text, answer.text

    # Its stored connection tested from the list.
    row = f'data-service="population-registry/{CODE}" data-source="console" data-enabled="yes"'
    assert row in done.text
    checked = olga.submit(done, f'name="code" value="{CODE}"', code=CODE)
    assert 'data-ok="yes"' in checked.text

    # Disabled: refused as a service never declared, with the X-Road error of one.
    disabled = olga.post(
        f"{console(roles)}/services/disable",
        {"csrf": hidden_csrf(done.text), "subsystem": "population-registry", "code": CODE},
    )
    assert disabled.status_code == 200
    assert 'data-enabled="no"' in disabled.text
    refusal = roles.call(f"{COPY}?person={MARI}", headers=RESIDENCE)
    unknown = roles.call(f"/r1/{federation.POPULATION_REGISTRY}/never-declared?person={MARI}")
    assert refusal.status_code == unknown.status_code == 404
    assert refusal.json()["type"] == unknown.json()["type"]
    assert refusal.json()["type"].endswith("UnknownService")

    enabled = olga.post(
        f"{console(roles)}/services/enable",
        {"csrf": hidden_csrf(done.text), "subsystem": "population-registry", "code": CODE},
    )
    assert 'data-enabled="yes"' in enabled.text
    assert roles.call(f"{COPY}?person={MARI}", headers=RESIDENCE).status_code == 200

    # Edited: the new declaration is served; the settings file's cannot be edited here.
    page = olga.get(f"{console(roles)}/services/edit?subsystem=population-registry&code={CODE}")
    assert "residence record, declared from the console" in page.text  # the stored values
    assert 'id="save"' in page.text
    edited = send(
        olga, roles, page, "edit", declaration(roles, description="edited from the console")
    )
    assert 'id="done"' in edited.text
    assert "edited from the console" in edited.text
    file_service = olga.http.get(
        f"{console(roles)}/services/edit",
        params={"subsystem": "population-registry", "code": "birth-certificate"},
    )
    assert file_service.status_code == 400
    assert "settings file" in file_service.text

    newest = [r for r in change_rows(olga.get(f"{console(roles)}/changes")) if "service." in r]
    for row_text, action in zip(
        newest,
        ("service.edit", "service.enable", "service.disable", "service.declare"),
        strict=True,
    ):
        assert action in row_text
        assert "console:olga" in row_text
    olga.close()

    # Viewers see the services, change nothing.
    vera = signed_in(roles, "vera")
    seen = vera.get(f"{console(roles)}/services")
    assert CODE in seen.text
    assert "/services/declare" not in seen.text
    assert "/services/disable" not in seen.text
    for language, words in (("ar", "ملف الإعدادات (للقراءة فقط)"), ("fr", "Déclaré dans")):
        assert words in vera.get(f"{console(roles)}/services?lang={language}").text
    vera.close()

    # Publishing: signed with the gateway's own key; no token of the authority's anywhere.
    assert roles.call(f"{COPY}?person={MARI}", headers=RESIDENCE).status_code == 200
    before = {s.identifier for s in roles.roles.central.registry.services()}
    assert f"{federation.POPULATION_REGISTRY}/{CODE}" not in before
    olga = signed_in(roles, "olga")
    services = olga.get(f"{console(roles)}/services")
    published = olga.submit(services, 'id="publish"')
    assert 'id="done"' in published.text, published.text[:3000]
    listed_ids = {s.identifier for s in roles.roles.central.registry.services()}
    assert f"{federation.POPULATION_REGISTRY}/{CODE}" in listed_ids
    assert f"{federation.RESIDENCE_RECORD}/v1" in listed_ids  # the file's stay listed
    newest = change_rows(olga.get(f"{console(roles)}/changes"))
    assert "services.publish" in newest[0]
    assert "console:olga" in newest[0]
    olga.close()


def test_passwords_in_connector_addresses_are_never_shown() -> None:
    url = "postgresql://registry:s3cret@db.example.org/population"
    assert hide_password(url) == "postgresql://registry:***@db.example.org/population"
    spec = ServiceSpec.model_validate(
        {
            "subsystem": "population-registry",
            "code": "x",
            "evidence_type": "residence-record",
            "connector": {"type": "sql", "url": url, "query": "SELECT 1"},
        }
    )
    assert "s3cret" not in json.dumps(shown(spec))
    # The edit form sends the hidden password back: the stored one is kept.
    sent = spec.model_copy(
        update={"connector": spec.connector.model_copy(update={"url": hide_password(url)})}
    )
    assert keep_password(sent, spec).connector.url == url


def send(
    browser: Browser, roles: Roles, page: httpx.Response, action: str, fields: dict[str, str]
) -> httpx.Response:
    """Fill the service form of ``page`` with ``fields`` and press the button of ``action``."""
    return browser.post(
        f"{console(roles)}/services/{action}", {"csrf": hidden_csrf(page.text), **fields}
    )


def hidden_csrf(text: str) -> str:
    from tests.browser import hidden_fields

    return hidden_fields(text)["csrf"]


def test_the_same_operations_run_from_the_command_line(roles: Roles, tmp_path: Path) -> None:
    """For automation: a service declared, tested, disabled and published by commands, served
    by the running gateway once it next looks (its timer; here asked at once)."""
    config = str(roles.layout.provider)
    code = "residence-cli"
    declared = tmp_path / "service.toml"
    fields = "".join(f'"{k}" = "{v}"\n' for k, v in population.RESIDENCE_FIELDS.items())
    declared.write_text(
        f'subsystem = "population-registry"\ncode = "{code}"\n'
        'evidence_type = "residence-record"\nconsent_policy = "public"\nparameters = ["person"]\n'
        f'[connector]\ntype = "sql"\nurl = "sqlite:///{roles.layout.registry}"\n'
        f"query = {json.dumps(population.RESIDENCE_QUERY)}\n[connector.fields]\n{fields}"
    )
    made = exchange("gateway", "service", "declare", "-c", config, "-f", str(declared))
    assert made.returncode == 0, made.stderr
    service = f"{federation.POPULATION_REGISTRY}/{code}"
    roles.provider.access.grant(service=service, subject=PORTAL_CLIENT, actor="test")
    roles.roles.run(roles.provider.declared.sync())
    path = f"/r1/{service}?person={MARI}"
    assert roles.call(path, headers=RESIDENCE).status_code == 200

    tested = exchange("gateway", "service", "test", "-c", config, "population-registry", code)
    assert tested.returncode == 0, tested.stderr
    assert "accepts the query" in tested.stdout

    again = exchange("gateway", "service", "declare", "-c", config, "-f", str(declared))
    assert again.returncode != 0
    assert "declared already" in again.stderr

    off = exchange("gateway", "service", "disable", "-c", config, "population-registry", code)
    assert off.returncode == 0, off.stderr
    roles.roles.run(roles.provider.declared.sync())
    assert roles.call(path, headers=RESIDENCE).status_code == 404
    listed = exchange("gateway", "service", "list", "-c", config)
    [row] = [line for line in listed.stdout.splitlines() if f"/{code} " in line]
    assert "disabled" in row

    published = exchange("gateway", "publish", "-c", config)  # signed: no token needed
    assert published.returncode == 0, published.stderr
    listed_ids = {s.identifier for s in roles.roles.central.registry.services()}
    assert service not in listed_ids  # disabled: it leaves the catalogue
    changed = exchange("gateway", "changes", "-c", config)
    assert "service.disable" in changed.stdout
    assert "services.publish" in changed.stdout


def test_a_running_gateway_serves_a_declaration_made_beside_it(
    fresh: Running, tmp_path: Path
) -> None:
    """A gateway process started before the declaration serves it within seconds, with no
    restart: its timer reads the raised revision from the database; and withdraws it as soon
    when it is disabled."""
    config = str(fresh.layout.provider)
    declared = tmp_path / "service.toml"
    fields = "".join(f'"{k}" = "{v}"\n' for k, v in population.RESIDENCE_FIELDS.items())
    declared.write_text(
        f'subsystem = "population-registry"\ncode = "{CODE}"\n'
        'evidence_type = "residence-record"\nconsent_policy = "public"\nparameters = ["person"]\n'
        f'[connector]\ntype = "sql"\nurl = "sqlite:///{fresh.layout.registry}"\n'
        f"query = {json.dumps(population.RESIDENCE_QUERY)}\n[connector.fields]\n{fields}"
    )
    fresh.provider_access().grant(
        service=f"{federation.POPULATION_REGISTRY}/{CODE}", subject=PORTAL_CLIENT, actor="test"
    )
    path = f"{COPY}?person={MARI}"
    assert fresh.call(path, headers=RESIDENCE).status_code == 404
    made = exchange("gateway", "service", "declare", "-c", config, "-f", str(declared))
    assert made.returncode == 0, made.stderr
    served = until(lambda: fresh.call(path, headers=RESIDENCE).status_code == 200)
    assert served < SYNC_INTERVAL + 5

    off = exchange("gateway", "service", "disable", "-c", config, "population-registry", CODE)
    assert off.returncode == 0, off.stderr
    until(lambda: fresh.call(path, headers=RESIDENCE).status_code == 404)


def until(check: Callable[[], bool], within: float = 30) -> float:
    """Seconds until ``check`` held (asked every 0.2 s), or fail after ``within``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > within:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.2)
    return time.monotonic() - start
