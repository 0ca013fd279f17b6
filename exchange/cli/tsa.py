"""``exchange tsa ...``: run a timestamping authority (RFC 3161) for the instance's audit logs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDir = Annotated[
    Path, typer.Option("--data-dir", help="The authority's folder (key, certificate, policy).")
]
app = typer.Typer(help="Run a timestamping authority (RFC 3161).", no_args_is_help=True)


@app.command()
def init(
    data_dir: DataDir,
    name: Annotated[str, typer.Option(help="Its name in the instance, e.g. tsa1.")],
) -> None:
    """Make the key (kept here), a CSR and a policy OID."""
    from exchange.tsa import files

    csr = files.initialise(data_dir, name)
    typer.echo(
        f"wrote {csr}; have it certified with: "
        f"exchange central tsa add {name} --member ... --url ... --csr {csr}"
    )


@app.command()
def serve(
    data_dir: DataDir,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 4430,
) -> None:
    """Answer time-stamp queries (POST application/timestamp-query to /)."""
    from exchange import serving
    from exchange.logging import configure
    from exchange.trust.globalconf_client import utcnow
    from exchange.tsa import files
    from exchange.tsa.app import create_app

    configure(level="INFO")
    authority = files.load(data_dir)
    config = serving.config(create_app(authority, clock=utcnow), host=host, port=port)
    announce = f"timestamping authority serving on http://{host}:{port}"
    serving.run(serving.serve_all([config], on_started=lambda: typer.echo(announce, err=True)))
