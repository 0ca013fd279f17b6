"""Every role's settings: one loader, the file's folder for relative paths, then
``EXCHANGE_<ROLE>_<KEY>`` (``EXCHANGE_<ROLE>_<SECTION>_<KEY>``) from the environment, then the
command line's options."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from exchange.central.settings import CentralSettings
from exchange.consent.settings import ConsentSettings
from exchange.errors import InvalidRequest
from exchange.gateway.settings import SCHEMAS_DIR, GatewaySettings
from exchange.portal.settings import PortalSettings
from exchange.settings_file import RoleSettings

Role = TypeVar("Role", bound=RoleSettings)

FILE_DB = "sqlite:///from-the-file.db"
GATEWAY = f"""
id = "EE/GOV/70000310/gw1"
data_dir = "data"
anchor = "../anchor.json"
subsystems = ["population-registry"]
database_url = "{FILE_DB}"

[[services]]
subsystem = "population-registry"
code = "birth-certificate"
evidence_type = "birth-certificate"
openapi = "api.yaml"
[services.connector]
type = "sql"
url = "sqlite:///population.db"
query = "SELECT 1"
"""

PREVIEW = """
[identity]
issuer = "https://idp.example"
jwks_url = "https://idp.example/jwks"
[identity.portals]
"citizen-portal" = "EE/GOV/70000001/citizen-portal"

[preview]
port = 4412
public_url = "https://preview.example"
client_id = "population-preview"
"""

CONSENT = """
name = "consent"
member = "EE/GOV/70000000"
data_dir = "."
anchor = "anchor.json"
public_url = "https://consent.example"

[identity]
issuer = "https://idp.example"
jwks_url = "https://idp.example/jwks"
client_id = "consent-service"
"""

PORTAL = """
client = "EE/GOV/70000001/citizen-portal"
gateway_url = "http://127.0.0.1:4420"
anchor = "anchor.json"
data_dir = "data"
public_url = "http://127.0.0.1:4450"
consent_service = "consent"

[identity]
issuer = "http://127.0.0.1:4440"
jwks_url = "http://127.0.0.1:4440/jwks"
client_id = "citizen-portal"

[[procedures]]
code = "passport"
title = "Apply for a passport"
description = "A first passport needs proof of birth."
service = "EE/GOV/70000310/population-registry/birth-certificate/v1"
evidence = "birth certificate"
purpose = "passport-application"
purpose_text = "to check your identity"
"""


def written(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def loaded(model: type[Role], folder: Path, text: str, **environ: str) -> Role:
    """``text`` as ``model``'s file in ``folder``, with ``environ`` as the environment."""
    return model.load(written(folder, "settings.toml", text), environ=environ)


def test_relative_paths_are_taken_from_the_files_folder(tmp_path: Path) -> None:
    settings = loaded(GatewaySettings, tmp_path / "gw", GATEWAY)
    folder = (tmp_path / "gw").resolve()
    assert settings.data_dir == folder / "data"
    assert settings.anchor == folder / ".." / "anchor.json"
    assert settings.schemas_dir == SCHEMAS_DIR
    assert settings.services[0].openapi == folder / "api.yaml"
    assert settings.services[0].connector.url == f"sqlite:///{folder / 'population.db'}"
    assert settings.database_url == FILE_DB


FILES: dict[type[RoleSettings], str] = {
    GatewaySettings: GATEWAY + PREVIEW,
    ConsentSettings: CONSENT,
    PortalSettings: PORTAL,
}
SECRET = "identity.client_secret"
# (settings, variable, its value, the key it sets, the value that key then has)
VARIABLES = [
    (GatewaySettings, "EXCHANGE_GATEWAY_DATABASE_URL", "postgresql://g", "database_url", None),
    (GatewaySettings, "EXCHANGE_GATEWAY_PREVIEW_CLIENT_SECRET", "s", "preview.client_secret", None),
    (GatewaySettings, "EXCHANGE_GATEWAY_CONSUMER_PORT", "9090", "consumer.port", 9090),
    (GatewaySettings, "EXCHANGE_GATEWAY_JSON_LOGS", "true", "json_logs", True),
    (GatewaySettings, "EXCHANGE_CONSENT_DATABASE_URL", "postgresql://c", "database_url", FILE_DB),
    (GatewaySettings, "EXCHANGE_GATEWAY_REPLICA", "", "replica", "1"),  # empty: no value
    (ConsentSettings, "EXCHANGE_CONSENT_DATABASE_URL", "postgresql://c", "database_url", None),
    (ConsentSettings, "EXCHANGE_CONSENT_CLIENT_SECRET", "s", SECRET, None),  # its older name
    (ConsentSettings, "EXCHANGE_CONSENT_IDENTITY_CLIENT_SECRET", "s", SECRET, None),
    (PortalSettings, "EXCHANGE_PORTAL_IDENTITY_CLIENT_SECRET", "s", SECRET, None),
    (PortalSettings, "EXCHANGE_PORTAL_PUBLIC_URL", "https://portal.example", "https", True),
    (PortalSettings, "EXCHANGE_PORTAL_LISTEN_HOST", "192.0.2.1", "listen.host", None),
]


@pytest.mark.parametrize(("model", "variable", "value", "key", "expected"), VARIABLES)
def test_a_variable_overrides_its_key_in_the_file(
    tmp_path: Path,
    model: type[RoleSettings],
    variable: str,
    value: str,
    key: str,
    expected: object,
) -> None:
    """Only the role's own prefix counts; ``expected`` None: the variable's value."""
    settings: object = loaded(model, tmp_path, FILES[model], **{variable: value})
    for part in key.split("."):
        settings = getattr(settings, part)
    assert settings == (value if expected is None else expected)


def test_a_section_the_file_leaves_out_is_not_made_by_a_variable(tmp_path: Path) -> None:
    variable = {"EXCHANGE_GATEWAY_PREVIEW_CLIENT_SECRET": "s3cret"}
    assert loaded(GatewaySettings, tmp_path, GATEWAY, **variable).preview is None


def test_a_section_with_defaults_is_made_by_a_variable() -> None:
    # The authority has no settings file: its console is turned on by the environment alone.
    settings = CentralSettings.load(
        environ={
            "EXCHANGE_CENTRAL_CONSOLE_ENABLED": "true",
            "EXCHANGE_CENTRAL_CONSOLE_PUBLIC_URL": "http://127.0.0.1:4400",
            "EXCHANGE_CENTRAL_CONSOLE_ISSUER": "http://127.0.0.1:4407",
            "EXCHANGE_CENTRAL_CONSOLE_JWKS_URL": "http://127.0.0.1:4407/jwks",
            "EXCHANGE_CENTRAL_CONSOLE_CLIENT_ID": "central-console",
        }
    )
    assert settings.console.enabled
    assert settings.console.client_id == "central-console"
    assert settings.console.roles["operator"] == ["operator"]  # the section's other defaults
    assert not CentralSettings.load(environ={}).console.enabled


def test_the_consent_services_data_folder_is_the_files(tmp_path: Path) -> None:
    assert loaded(ConsentSettings, tmp_path, CONSENT).data_dir == tmp_path.resolve()


def test_the_central_authority_loads_from_the_environment_and_options() -> None:
    settings = CentralSettings.load(
        environ={
            "EXCHANGE_CENTRAL_DATA_DIR": "ca",
            "EXCHANGE_CENTRAL_PORT": "4401",
            "EXCHANGE_CENTRAL_HOST": "192.0.2.1",
            "EXCHANGE_CENTRAL_CONFIGURATION_VALIDITY": "PT2H",
            "EXCHANGE_CENTRAL_DATABASE_URL": "postgresql://ca@db/ca",
        },
        overrides={"port": 4402},
    )
    assert settings.data_dir == Path("ca")
    assert (settings.host, settings.port) == ("192.0.2.1", 4402)  # an option beats a variable
    assert settings.configuration_validity == timedelta(hours=2)
    assert settings.db_url == "postgresql://ca@db/ca"
    defaults = CentralSettings.load(environ={})
    assert defaults.data_dir == Path("exchange-data/central")
    assert defaults.url == "http://127.0.0.1:4400"


def test_a_bad_value_names_the_key_and_the_variable(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match=r"port: .*EXCHANGE_CENTRAL_PORT"):
        CentralSettings.load(environ={"EXCHANGE_CENTRAL_PORT": "eighty"})
    path = written(tmp_path, "portal.toml", "timeout_seconds = 3\n" + PORTAL)
    with pytest.raises(InvalidRequest, match=r"portal settings .*portal.toml: timeout_seconds"):
        PortalSettings.load(path, environ={})
    with pytest.raises(InvalidRequest, match="cannot read consent service settings"):
        ConsentSettings.load(tmp_path / "missing.toml", environ={})
