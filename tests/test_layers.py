"""The layers of docs/architecture.md, checked on the source: dependencies only point down.

Every import in ``exchange/``, ``audit/`` and ``connectors/`` is read with :mod:`ast` (imports
inside functions too) and held against the rules below; a violation names the file and line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLES = ("central", "gateway", "consent", "portal", "tsa", "idp")
# What one role may import of another: the wire formats both ends speak, nothing that serves.
PROTOCOLS = frozenset({"exchange.consent.artefact", "exchange.consent.messages"})
# Wiring: the command line and the sample federation start every role and may import anything.
WIRING = ("exchange.cli", "exchange.sample")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:  # ``from exchange.consent import store`` names a module
                yield node.lineno, f"{node.module}.{alias.name}"


def role_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "exchange" and parts[1] in ROLES:
        return parts[1]
    return None


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def problem(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None."""
    if importer.startswith(WIRING) or not is_module(imported):
        return None
    source, target = role_of(importer), role_of(imported)
    if imported.startswith("exchange.gateway") and source != "gateway":
        return "only the gateway imports exchange.gateway"
    if importer.startswith("audit") and (target is not None or imported.startswith(WIRING)):
        return "audit/ is self-contained: it imports no role"
    if target is not None and source is None:
        return "the layers below the roles import no role"
    if target is not None and source != target and imported not in PROTOCOLS:
        return f"a role imports another role's protocol modules only ({', '.join(PROTOCOLS)})"
    return None


def sources() -> Iterator[Path]:
    for package in ("exchange", "audit", "connectors"):
        yield from sorted((ROOT / package).rglob("*.py"))


def violations() -> list[str]:
    found = []
    for path in sources():
        importer = module_name(path)
        for line, imported in imports(path):
            why = problem(importer, imported)
            if why is not None:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {imported}: {why}")
    return found


def test_dependencies_point_down() -> None:
    assert violations() == []


def test_no_cycle_between_packages() -> None:
    """Packages (``exchange.gateway``, ``audit``, ...) form no cycle, wiring aside."""

    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "exchange" and len(parts) > 1 else parts[0]

    edges: dict[str, set[str]] = {}
    for path in sources():
        importer = module_name(path)
        if importer.startswith(WIRING):
            continue
        for _, imported in imports(path):
            if is_module(imported) and package(imported) != package(importer):
                edges.setdefault(package(importer), set()).add(package(imported))

    def cycle_from(start: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(edges.get(path[-1], ())):
            if nxt == start:
                return [*path, nxt]
            if nxt not in path:
                found = cycle_from(start, [*path, nxt])
                if found:
                    return found
        return None

    cycles = [c for c in (cycle_from(p, [p]) for p in sorted(edges)) if c]
    assert cycles == []


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("audit.heads", "exchange.gateway.signing"),
        ("audit.timestamp", "exchange.tsa.tokens"),
        ("audit.models", "exchange.central.models"),
        ("exchange.consent.app", "exchange.gateway.node"),
        ("exchange.portal.app", "exchange.consent.store"),
        ("exchange.gateway.provider", "exchange.consent.store"),
        ("exchange.trust.view", "exchange.consent.artefact"),
        ("connectors.http", "exchange.gateway.xroad"),
    ],
)
def test_the_rules_catch_what_they_forbid(importer: str, imported: str) -> None:
    assert problem(importer, imported) is not None


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("exchange.gateway.consent", "exchange.consent.artefact"),
        ("exchange.portal.app", "audit.receipt"),
        ("exchange.gateway.node", "audit.log"),
        ("audit.verify", "exchange.trust.signed"),
        ("exchange.cli.demo", "exchange.gateway.node"),
    ],
)
def test_the_rules_allow_what_the_layers_allow(importer: str, imported: str) -> None:
    assert problem(importer, imported) is None
