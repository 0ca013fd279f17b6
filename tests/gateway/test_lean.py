"""A gateway process loads only what its configuration uses (issue 13: <= 150 MB resident).

Each check runs in a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from exchange.db import migrate
from exchange.db.engine import build_engine, sqlite_url
from exchange.gateway.settings import SCHEMAS_DIR
from exchange.sample import federation

# xmlschema with elementpath, and one compiled schema: ~17 MB of a process.
SCHEMA_TOOLKIT = ("elementpath", "xmlschema")


def loaded_after(code: str, watched: tuple[str, ...]) -> list[str]:
    """Which of the ``watched`` packages a fresh interpreter holds after running ``code``."""
    probe = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps(sorted(n for n in {watched!r} if n in sys.modules)))
        """)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_the_gateway_server_imports_no_schema_toolkit() -> None:
    """What ``exchange gateway serve`` imports before it reads its settings."""
    code = """
        import exchange.cli.main
        import exchange.gateway.metrics, exchange.gateway.node, exchange.gateway.runner
    """
    assert loaded_after(code, SCHEMA_TOOLKIT) == []


def test_the_gateway_server_imports_nothing_of_the_central_authority() -> None:
    """Every role's process reads the whole command line; the authority's modules took ~1 MB."""
    code = """
        import exchange.cli.main
        import exchange.gateway.metrics, exchange.gateway.node, exchange.gateway.runner
    """
    assert loaded_after(code, ("exchange.central",)) == []


def test_a_gateway_that_provides_no_service_loads_no_schema() -> None:
    code = f"""
        from pathlib import Path
        from exchange.gateway.services import ServiceTable
        from exchange.identifiers import MemberId
        table = ServiceTable.build(
            member=MemberId.parse("{federation.POPULATION}"),
            specs=[],
            schemas_dir=Path({str(SCHEMAS_DIR)!r}),
            max_part_bytes=1024,
        )
        assert table.keys == frozenset()
    """
    assert loaded_after(code, SCHEMA_TOOLKIT) == []


def test_a_gateway_that_provides_a_service_loads_its_schema() -> None:
    code = f"""
        from pathlib import Path
        from exchange.gateway.services import ServiceTable
        from exchange.gateway.settings import ServiceSpec
        from exchange.identifiers import MemberId
        spec = ServiceSpec.model_validate({{
            "subsystem": "population-registry",
            "code": "birth-certificate",
            "evidence_type": "birth-certificate",
            "parameters": ["person"],
            "connector": {{"type": "python", "target": "json:loads"}},
        }})
        table = ServiceTable.build(
            member=MemberId.parse("{federation.POPULATION}"),
            specs=[spec],
            schemas_dir=Path({str(SCHEMAS_DIR)!r}),
            max_part_bytes=1024,
        )
        (service,) = [s for _, s in table.items()]
        assert service.schema.evidence_type == "birth-certificate"
    """
    assert loaded_after(code, SCHEMA_TOOLKIT) == list(SCHEMA_TOOLKIT)


def test_a_database_at_the_newest_schema_is_opened_without_alembic(tmp_path: Path) -> None:
    """Alembic (with mako) takes ~10 MB of a process; a gateway loads it only to migrate."""
    url = sqlite_url(tmp_path / "gateway.db")
    engine = build_engine(url)
    migrate.upgrade("gateway", engine)
    engine.dispose()
    code = f"""
        from exchange.db import migrate
        from exchange.db.engine import build_engine
        engine = build_engine({url!r})
        migrate.upgrade("gateway", engine)
        migrate.require_head("gateway", engine)
    """
    assert loaded_after(code, ("alembic", "mako")) == []


def test_a_database_behind_is_migrated_with_alembic(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "gateway.db")
    engine = build_engine(url)
    migrate.upgrade("gateway", engine, "0011")
    engine.dispose()
    code = f"""
        from exchange.db import migrate
        from exchange.db.engine import build_engine
        engine = build_engine({url!r})
        migrate.upgrade("gateway", engine)
        migrate.require_head("gateway", engine)
    """
    assert loaded_after(code, ("alembic",)) == ["alembic"]


def test_a_gateway_on_sqlite_loads_no_postgresql_dialect(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "gateway.db")
    engine = build_engine(url)
    migrate.upgrade("gateway", engine)
    engine.dispose()
    code = f"""
        import exchange.cli.main, exchange.gateway.node, exchange.gateway.runner
        from exchange.db.engine import build_engine
        from exchange.gateway.idempotency import Idempotency
        from exchange.gateway.quotas import Quotas
        from exchange.gateway.replay import ReplayGuard
        from exchange.trust.globalconf_client import utcnow
        engine = build_engine({url!r})
        ReplayGuard(engine, unflushed=engine)
        Quotas(engine, clock=utcnow, subject_hash=lambda person: person)
        Idempotency(engine, clock=utcnow)
    """
    assert loaded_after(code, ("sqlalchemy.dialects.postgresql",)) == []
