from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.central import files
from exchange.central.service import Central, build
from exchange.central.settings import CentralSettings
from exchange.db import migrate
from exchange.db.engine import build_engine
from tests.conftest import Clock


@pytest.fixture
def central_settings(tmp_path: Path, database_url: str) -> CentralSettings:
    return CentralSettings(data_dir=tmp_path / "central", database_url=database_url, port=4401)


@pytest.fixture
def central(central_settings: CentralSettings, clock: Clock) -> Central:
    """An initialised authority for instance EE on a fresh database, on the test clock."""
    # Certificates are checked by openssl against the real clock, so the test clock starts now.
    clock.at = datetime.now(UTC).replace(microsecond=0)
    files.initialise(central_settings, instance="EE", at=clock.at)
    migrate.upgrade("central", build_engine(central_settings.db_url))
    made = build(central_settings, clock=clock)
    made.registry.seed_member_classes(actor="test")
    return made
