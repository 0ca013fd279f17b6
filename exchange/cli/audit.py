"""``exchange audit ...``: verify and export a gateway's audit log, sign a tree head now."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from sqlalchemy import Engine

from audit.verify import Anchors
from exchange.errors import InvalidRequest
from exchange.gateway.settings import GatewaySettings
from exchange.trust.globalconf import TrustAnchor

app = typer.Typer(help="Verify and export the tamper-evident audit log.", no_args_is_help=True)
Config = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Gateway settings file (TOML).", exists=True, dir_okay=False
    ),
]


@dataclass(frozen=True)
class _Local:
    settings: GatewaySettings
    engine: Engine
    anchor: TrustAnchor
    document: bytes
    signing: list[x509.Certificate]
    trust: Anchors


def _local(config: Path) -> _Local:
    """A gateway's own log, with the trust material its data folder holds."""
    from audit import bundle
    from exchange.db import migrate
    from exchange.db.engine import build_engine
    from exchange.trust import globalconf
    from exchange.trust.keys import load_certificate

    settings = GatewaySettings.load(config)
    engine = build_engine(settings.db_url)
    migrate.upgrade("gateway", engine)
    anchor = TrustAnchor.load(settings.anchor)
    cached = settings.data_dir / "globalconf.jws"
    if not cached.exists():
        raise InvalidRequest(f"{cached} is missing: the gateway has never held a configuration")
    document = cached.read_bytes()
    configuration = globalconf.verify_archived(document, anchor)
    signing = [load_certificate(settings.data_dir / "signing.pem")]
    trust = bundle.anchors(configuration, settings.audit_chain, signing)
    return _Local(settings, engine, anchor, document, signing, trust)


@app.command()
def verify(
    config: Config = None,
    bundle_dir: Annotated[
        Path | None, typer.Option("--bundle", help="An exported bundle instead.", file_okay=False)
    ] = None,
    anchor: Annotated[
        Path | None, typer.Option(help="Trust anchor to check a bundle against.", dir_okay=False)
    ] = None,
    kept_heads: Annotated[
        Path | None,
        typer.Option(
            "--heads",
            help="Signed heads or receipts kept earlier (JSON, or JSON lines, as the gateway"
            " hands them out): the log must be the one they signed.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    require_witness: Annotated[
        bool,
        typer.Option(
            "--require-witness",
            help="Fail unless the newest signed head, and every head or receipt given with"
            " --heads, carries a valid witness countersignature.",
        ),
    ] = False,
    witnesses: Annotated[
        int,
        typer.Option(
            "--witnesses",
            min=1,
            help="With --require-witness: how many distinct witnesses (the authority, peer"
            " gateways of other members) must have countersigned.",
        ),
    ] = 1,
) -> None:
    """Check records, chain, heads, signatures, timestamps and witness countersignatures; name
    the first bad position."""
    from audit import bundle, kept
    from audit.verify import Stored
    from audit.verify import verify as check

    bodies: Iterable[bytes | Stored]
    if bundle_dir is not None:
        if anchor is None:
            raise InvalidRequest(
                "--anchor is required with --bundle: the bundle's own anchor proves nothing"
            )
        chain, bodies, heads, trust = bundle.load(bundle_dir, TrustAnchor.load(anchor))
    elif config is not None:
        local = _local(config)
        chain, trust = local.settings.audit_chain, local.trust
        bodies, heads = bundle.stored(local.engine, chain), bundle.heads(local.engine, chain)
    else:
        raise InvalidRequest("give --config (a gateway) or --bundle (an export)")
    read = None if kept_heads is None else kept.read(kept_heads, chain=chain, anchors=trust)
    report = check(chain, bodies, heads, trust, read.kept if read else None)
    if read is not None and read.others:
        typer.echo(f"note: {read.others} kept heads of other chains were left out", err=True)
    if report.problem is not None:
        typer.echo(
            f"chain {chain}: FAILED {report.problem.where}: {report.problem.message}",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(
        f"chain {chain}: OK, {report.records} records, {report.heads} signed heads, "
        f"{report.timestamped} timestamped, {report.witnessed} witnessed"
        + (" (the newest head is witnessed)" if report.newest_witnesses == 1 else "")
        + (
            f" (the newest head is witnessed by {report.newest_witnesses})"
            if report.newest_witnesses > 1
            else ""
        )
    )
    if require_witness and report.newest_witnesses < witnesses:
        typer.echo(
            f"chain {chain}: FAILED: the newest signed head carries "
            + (
                f"{report.newest_witnesses} of the {witnesses} witness countersignatures required"
                if report.newest_witnessed
                else "no witness countersignature"
            )
            + " (--require-witness)",
            err=True,
        )
        raise typer.Exit(1)
    short = read.short_of(witnesses) if require_witness and read is not None else []
    if short:
        typer.echo(
            f"chain {chain}: FAILED: the kept {', '.join(short)} carries no witness"
            f" countersignature, or fewer than {witnesses} (--require-witness); a receipt"
            " fetched while witnessing was pending is witnessed when fetched again",
            err=True,
        )
        raise typer.Exit(1)
    if read is not None:
        typer.echo(
            f"chain {chain}: consistent with the head kept at size {read.kept.largest}"
            f" ({read.heads} kept heads checked)"
        )
    if report.uncovered:
        typer.echo(
            f"note: the last {report.uncovered} records are chained but not yet covered by a signed"
            " head; a later head (or one you kept from before) will pin them",
            err=True,
        )


@app.command()
def export(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", exists=True, dir_okay=False, help="Gateway settings file."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the bundle.")],
) -> None:
    """Write a self-contained bundle that an auditor can verify with the trust anchor alone."""
    from audit import bundle

    local = _local(config)
    records, heads = bundle.export(
        local.engine,
        local.settings.audit_chain,
        configuration=local.document,
        anchor=local.anchor,
        signing=local.signing,
        out=out,
    )
    typer.echo(f"wrote {out}: {records} records, {heads} signed heads")


@app.command()
def head(
    config: Annotated[Path, typer.Option("--config", "-c", exists=True, dir_okay=False)],
) -> None:
    """Sign (and timestamp) a tree head now, as the running gateway would periodically."""
    from exchange.gateway.node import Gateway

    async def main() -> None:
        gateway = Gateway(GatewaySettings.load(config))
        try:
            signed = await gateway.heads.sign_now()
        finally:
            await gateway.close()
        stamped = (
            f", timestamped by {signed.tsa}"
            if signed.tsa
            else ", not timestamped (no TSA answered)"
        )
        typer.echo(f"signed head of {signed.chain} at size {signed.size}{stamped}")

    asyncio.run(main())
