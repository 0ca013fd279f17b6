"""What a wheel carries is enough: built from the checkout, installed into a fresh virtual
environment and run as ``exchange demo`` from a folder that knows nothing of the checkout.

The fresh environment holds the wheel alone; its dependencies are read from this environment's
site-packages (a path line, so this environment's editable install of the checkout stays out of
sight), which the same ``pyproject.toml`` filled. So the test needs no package index and checks
what the wheel itself must carry: code, templates, schemas, migrations. ``-m "not packaging"``
leaves it out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from exchange.cli import demo
from exchange.sample import federation
from tests.servers import free_ports, serving

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    "demo-data",
)  # fmt: skip


def run(command: Sequence[str | Path], *, timeout: float, cwd: Path) -> str:
    done = subprocess.run(
        [str(c) for c in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=clean_environment(),
        check=False,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_environment() -> dict[str, str]:
    """This process's environment without what would lead Python back to the checkout."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("EXCHANGE_")
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (a stale ``build/`` cannot slip files in)."""
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, work / "source", ignore=NOT_SOURCE)
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", "dist", work / "source"],
        timeout=300,
        cwd=work,
    )  # an absolute path: a bare "source" would name a package on the index
    (built,) = (work / "dist").glob("exchange-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtual environment holding the wheel."""
    work = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", "venv"], timeout=120, cwd=work)
    bin_dir = work / "venv" / "bin"
    (site,) = (work / "venv" / "lib").glob("python*/site-packages")
    # A plain path is appended to sys.path without its .pth files being run: the packages the
    # wheel depends on are found there, the checkout's editable install is not.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", bin_dir / "python"]
    run([*pip, "install", "--no-deps", "--no-index", "-q", wheel], timeout=300, cwd=work)
    return bin_dir


def test_the_wheel_carries_templates_schemas_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for app in ("portal", "consent", "gateway", "idp", "web"):
        assert any(n.startswith(f"exchange/{app}/templates/") for n in names), app
    assert "exchange/web/templates/base.html" in names
    for language in ("ar", "fr"):  # the catalogues, compiled when first read
        assert f"exchange/locale/{language}/LC_MESSAGES/messages.po" in names
    for schema in ROOT.joinpath("schemas").glob("*.xsd"):
        assert f"schemas/{schema.name}" in names
    for role in ("central", "gateway", "consent"):
        assert f"exchange/{role}/migrations/env.py" in names
        assert f"exchange/{role}/migrations/script.py.mako" in names
        assert f"exchange/{role}/migrations/versions/0001_initial.py" in names
    assert {"exchange/py.typed", "audit/py.typed", "connectors/py.typed"} <= names


def test_the_wheel_declares_its_licence_as_an_spdx_expression(wheel: Path) -> None:
    """Core metadata 2.4: ``License-Expression``, which setuptools requires from 2027 on (a
    licence table in pyproject.toml is refused then)."""
    archive = zipfile.ZipFile(wheel)
    [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: MIT" in headers
    assert not [h for h in headers if h.startswith("License:")]


def test_the_installed_demo_comes_up_serves_and_stops(installed: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = run(
        [installed / "python", "-c", "import exchange, schemas; print(exchange.__file__)"],
        timeout=60,
        cwd=outside,
    )
    assert Path(where.strip()).is_relative_to(installed.parent), where
    base = free_ports(demo.ALL_OFFSETS)
    gateway = f"http://127.0.0.1:{base + demo.OFFSETS['consumer_consumer']}"
    with serving(
        ["demo", "--data-dir", str(outside / "demo"), "--port", str(base)],
        health_url=f"{gateway}/health",
        env=clean_environment(),
        cwd=outside,
        log=tmp_path / "demo.log",
        ready_within=180,
        command=[str(installed / "exchange")],
    ) as process:
        evidence = httpx.get(
            f"{gateway}/r1/{federation.RESIDENCE_RECORD}/v1",
            params={"person": "EE38001085718"},
            headers={
                "X-Road-Client": str(federation.CITIZEN_PORTAL),
                "X-Exchange-Purpose": "residence-check",
                "Accept": "application/xml",
            },
            timeout=30,
        )
        assert evidence.status_code == 200, evidence.text  # encoded with a shipped schema
        assert "<ResidenceRecord" in evidence.text
        portal = httpx.get(f"http://127.0.0.1:{base + demo.OFFSETS['portal']}/", timeout=30)
        assert portal.status_code == 200  # a shipped template over the shared base
        assert "Public services" in portal.text
    assert process.returncode == 0, (tmp_path / "demo.log").read_text()
    assert "demo stopped" in (tmp_path / "demo.log").read_text()
