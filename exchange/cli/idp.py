"""``exchange idp ...``: the development identity provider (test citizens, OIDC ID tokens)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Run the development identity provider (test citizens only).", no_args_is_help=True
)
DataDir = Annotated[
    Path, typer.Option("--data-dir", help="The provider's folder (key, clients, citizens).")
]


@app.command()
def init(
    data_dir: DataDir,
    issuer: Annotated[str, typer.Option(help="Its public URL, e.g. http://127.0.0.1:4440.")],
    client: Annotated[
        list[str],
        typer.Option(
            help="CLIENT_ID=REDIRECT_URI, repeatable: the portals allowed to sign citizens in."
        ),
    ],
) -> None:
    """Create the signing key and register clients; test citizens come from the sample register."""
    from exchange.errors import InvalidRequest
    from exchange.idp import files
    from exchange.idp.provider import Citizen
    from exchange.sample import population

    clients: dict[str, list[str]] = {}
    for entry in client:
        name, _, uri = entry.partition("=")
        if not name or not uri.startswith(("http://", "https://")):
            raise InvalidRequest(f"--client {entry!r} is not CLIENT_ID=REDIRECT_URI")
        clients.setdefault(name, []).append(uri)
    citizens = [Citizen(code, given, family) for code, given, family, *_ in population.PEOPLE]
    files.initialise(data_dir, issuer=issuer, clients=clients, citizens=citizens)
    typer.echo(
        f"identity provider {issuer} initialised in {data_dir} with {len(citizens)} test citizens"
    )


@app.command()
def serve(
    data_dir: DataDir,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 4440,
) -> None:
    """Serve discovery, JWKS, the login page and the token endpoint."""
    from exchange import serving
    from exchange.idp import files
    from exchange.idp.app import create_app
    from exchange.logging import configure
    from exchange.trust.globalconf_client import utcnow

    configure(level="INFO")
    provider = files.load(data_dir, clock=utcnow)
    config = serving.config(create_app(provider), host=host, port=port)
    announce = f"identity provider {provider.issuer} serving on http://{host}:{port}"
    serving.run(serving.serve_all([config], on_started=lambda: typer.echo(announce, err=True)))
