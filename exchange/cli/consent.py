"""``exchange consent ...``: run a consent service (citizens grant, list and revoke consents)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run a consent service.", no_args_is_help=True)
Config = Annotated[Path, typer.Option("--config", "-c", help="The consent service's settings.")]


@app.command()
def init(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Its folder (key, secrets, db).")],
    name: Annotated[str, typer.Option(help="Its name in the instance, e.g. consent.")],
) -> None:
    """Make the signing key (kept here) and a CSR for the central authority."""
    from exchange.consent import files

    csr = files.initialise(data_dir, name)
    typer.echo(
        f"wrote {csr}; have it certified with: exchange central consent-service add "
        f"--name {name} --member ... --url ... --csr {csr} --out {data_dir / 'consent.pem'}"
    )


@app.command()
def serve(config: Config) -> None:
    """Serve the citizens' pages and API and the providers' status and use endpoints."""
    from exchange import serving
    from exchange.consent.app import create_app
    from exchange.consent.service import ConsentService
    from exchange.consent.settings import ConsentSettings
    from exchange.logging import configure

    configure(level="INFO")
    settings = ConsentSettings.load(config)
    service = ConsentService(settings)
    service.trust.start(f"consent service {settings.name}")
    listen = settings.listen
    announce = f"consent service {settings.name} serving on http://{listen.host}:{listen.port}"
    serving.run(
        serving.serve_all(
            [serving.config(create_app(service), host=listen.host, port=listen.port)],
            background=[service.trust.keep_fresh(settings.globalconf_refresh)],
            on_started=lambda: typer.echo(announce, err=True),
        )
    )
