"""Evidence as a person reads it: (field, value) rows for the pages that show it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def flatten(
    evidence: Any, prefix: str = "", *, label: Callable[[str], str] = str
) -> list[tuple[str, str]]:
    """Evidence as (field, value) rows for the page, nested fields as ``a / b``; ``label``
    names each field as the reader reads it (by default as the evidence names it)."""
    if isinstance(evidence, dict):
        rows: list[tuple[str, str]] = []
        for key, value in evidence.items():
            name = label(str(key))
            rows += flatten(value, f"{prefix} / {name}" if prefix else name, label=label)
        return rows
    if isinstance(evidence, list):
        return [
            row
            for i, item in enumerate(evidence)
            for row in flatten(item, f"{prefix} {i + 1}", label=label)
        ]
    return [(prefix, "" if evidence is None else str(evidence))]
