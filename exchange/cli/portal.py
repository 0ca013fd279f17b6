"""``exchange portal ...``: run the example citizen portal (a consumer information system)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run the example citizen portal.", no_args_is_help=True)


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="The portal's settings.")],
) -> None:
    """Serve the portal: sign-in, procedures, consent, fetching evidence, who used my data."""
    from exchange import serving
    from exchange.logging import configure
    from exchange.portal.app import Portal, create_app
    from exchange.portal.settings import PortalSettings

    configure(level="INFO")
    settings = PortalSettings.load(config)
    portal = Portal(settings)
    portal.trust.start("citizen portal")
    listen = settings.listen
    announce = f"citizen portal serving on http://{listen.host}:{listen.port}"
    serving.run(
        serving.serve_all(
            [serving.config(create_app(portal), host=listen.host, port=listen.port)],
            background=portal.background,
            on_started=lambda: typer.echo(announce, err=True),
        )
    )
