"""``exchange demo``: bring the system up on embedded defaults and say what was done."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange.central import files
from exchange.central.settings import CentralSettings
from exchange.cli import central

DEMO_INSTANCE = "EE"


def demo(
    data_dir: Annotated[
        Path, typer.Option(help="Folder holding all demo state; a second run resumes it.")
    ] = Path("demo-data"),
    port: Annotated[int, typer.Option(help="Port of the central authority.")] = 4400,
) -> None:
    """Initialise (first run) and serve a demo instance on localhost."""
    url = f"http://127.0.0.1:{port}"
    settings = CentralSettings(data_dir=data_dir / "central", port=port, public_url=url)
    if (settings.data_dir / "authority.json").exists():
        typer.echo(f"resuming instance in {settings.data_dir}")
    else:
        central.init(instance=DEMO_INSTANCE, data_dir=settings.data_dir, public_url=settings.url)
    # The port may differ from the last run: keep the anchor's URL true.
    anchor = files.write_anchor(settings, files.load(settings))
    typer.echo("")
    typer.echo("central authority:")
    typer.echo(f"  global configuration  {settings.url}/globalconf")
    typer.echo(f"  trust anchor          {settings.url}/anchor  (sha256 {anchor.digest()})")
    typer.echo(f"  CRL                   {settings.url}/crl")
    typer.echo(
        f"  management API        {settings.url}/docs"
        f"  (token in {settings.data_dir / 'admin-token'})"
    )
    typer.echo("try:  exchange globalconf fetch --anchor " + str(settings.data_dir / "anchor.json"))
    typer.echo("stop with Ctrl-C")
    central.serve(data_dir=settings.data_dir, host=None, port=port, public_url=url, json_logs=False)
