"""``exchange keys ...``: a member's side of the CSR flow. Private keys never leave the member."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from exchange import keyfolder
from exchange.trust.keys import build_csr, csr_pem, generate_key

app = typer.Typer(
    help="Generate key pairs and certificate requests (the member's side).", no_args_is_help=True
)


@app.command()
def generate(
    key: Annotated[
        Path, typer.Option(help="Where to write the new private key (mode 0600; must not exist).")
    ],
    csr: Annotated[
        Path, typer.Option(help="Where to write the CSR to send to the central authority.")
    ],
    name: Annotated[
        str, typer.Option(help="A label for the CSR; the authority sets the real subject.")
    ] = "exchange",
) -> None:
    """Generate an EC P-256 key and a CSR for it."""
    private_key = generate_key()
    keyfolder.write_key(key, private_key)
    csr.write_text(csr_pem(build_csr(private_key, name)))
    typer.echo(f"wrote private key {key} (0600) and CSR {csr}")
