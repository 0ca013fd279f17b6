"""A gateway process loads only what its configuration uses (issue 13: <= 150 MB resident).

Each check runs in a fresh interpreter, since this test process has imported everything already.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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


def test_a_gateway_that_provides_no_service_loads_no_schema() -> None:
    code = f"""
        from pathlib import Path
        from exchange.gateway.services import ServiceTable
        from exchange.identifiers import MemberId
        table = ServiceTable.build(
            member=MemberId.parse("{federation.POPULATION}"),
            specs=[],
            schemas_dir=Path({str(SCHEMAS_DIR)!r}),
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
        )
        (service,) = [s for _, s in table.items()]
        assert service.schema.evidence_type == "birth-certificate"
    """
    assert loaded_after(code, SCHEMA_TOOLKIT) == list(SCHEMA_TOOLKIT)

