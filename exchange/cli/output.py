"""Small helpers for command output: files written safely, tables kept plain."""

from __future__ import annotations

from pathlib import Path

import typer


def emit(text: str, out: Path | None) -> None:
    """Write ``text`` to ``out`` if given (and say so), else to standard output."""
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    out.write_text(text)
    typer.echo(f"wrote {out}", err=True)


def table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    for row in [headers, *rows]:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
