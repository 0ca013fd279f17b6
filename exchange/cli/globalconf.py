"""``exchange globalconf ...``: fetch and verify a global configuration as a gateway would."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange.trust import globalconf
from exchange.trust.globalconf import TrustAnchor
from exchange.trust.globalconf_client import GlobalConfClient, utcnow

app = typer.Typer(help="Fetch and verify the signed global configuration.", no_args_is_help=True)
Anchor = Annotated[
    Path,
    typer.Option(
        help="Trust anchor file (anchor.json from the central authority).",
        exists=True,
        dir_okay=False,
    ),
]


def _summary(configuration: globalconf.GlobalConfiguration) -> None:
    typer.echo(f"instance {configuration.instance}, version {configuration.version}")
    typer.echo(
        f"generated {configuration.generated_at.isoformat()}, "
        f"expires {configuration.expires_at.isoformat()}"
    )
    typer.echo(
        f"{len(configuration.members)} members, {len(configuration.gateways)} gateways, "
        f"{len(configuration.revoked_serials)} revoked certificates"
    )


@app.command()
def fetch(
    anchor: Anchor,
    out: Annotated[Path | None, typer.Option(help="Also keep the verified document here.")] = None,
) -> None:
    """Download the configuration named in the anchor, verify it, and summarise it."""
    client = GlobalConfClient(anchor=TrustAnchor.load(anchor), cache_path=out)
    _summary(client.refresh())


@app.command()
def verify(
    document: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    anchor: Anchor,
) -> None:
    """Verify a saved configuration document against a trust anchor, now."""
    _summary(globalconf.verify(document.read_bytes(), TrustAnchor.load(anchor), at=utcnow()))
