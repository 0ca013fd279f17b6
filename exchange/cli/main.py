"""Entry point of the ``exchange`` command.

Errors end as one line on standard error and a non-zero exit status, never as a traceback:
exit 1 for a refused operation, 2 for a usage mistake, 130 when interrupted.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from exchange import __version__
from exchange.cli import audit, central, consent, demo, gateway, globalconf, idp, keys, portal, tsa
from exchange.errors import Error
from exchange.logging import configure as configure_logging

app = typer.Typer(
    name="exchange",
    help="Once-only data exchange: central authority, gateways, consent and audit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(audit.app, name="audit")
app.add_typer(central.app, name="central")
app.add_typer(consent.app, name="consent")
app.add_typer(gateway.app, name="gateway")
app.add_typer(idp.app, name="idp")
app.add_typer(keys.app, name="keys")
app.add_typer(portal.app, name="portal")
app.add_typer(tsa.app, name="tsa")
app.add_typer(globalconf.app, name="globalconf")
app.command("demo")(demo.demo)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def run() -> None:
    # Commands report failures themselves, as one line; only the servers log warnings.
    configure_logging(level="ERROR")
    command = typer.main.get_command(app)
    try:
        # Standalone mode: click reports usage mistakes itself (exit 2) and exits.
        command.main(prog_name="exchange")
    except Error as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        typer.echo(f"error: setting {where}: {first['msg']}", err=True)
        sys.exit(2)
    except OSError as exc:
        typer.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
