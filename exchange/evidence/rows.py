"""Evidence as a person reads it: (field, value) rows for the pages that show it."""

from __future__ import annotations

from typing import Any


def flatten(evidence: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Evidence as (field, value) rows for the page, nested fields as ``a / b``."""
    if isinstance(evidence, dict):
        rows: list[tuple[str, str]] = []
        for key, value in evidence.items():
            rows += flatten(value, f"{prefix} / {key}" if prefix else str(key))
        return rows
    if isinstance(evidence, list):
        return [
            row for i, item in enumerate(evidence) for row in flatten(item, f"{prefix} {i + 1}")
        ]
    return [(prefix, "" if evidence is None else str(evidence))]
