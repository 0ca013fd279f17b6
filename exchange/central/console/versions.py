"""The signed global configuration versions the authority kept, and what changed between two:
a line diff of their payloads, pretty-printed with sorted keys so that only real changes show.

The documents are read as the authority stored them; their signatures are not checked here
(the authority signed them itself; relying parties check them, :mod:`exchange.trust.globalconf`).
"""

from __future__ import annotations

import base64
import difflib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from exchange.central import models
from exchange.central.registry import Registry
from exchange.errors import NotFound

MAX_DIFF_LINES = 2000


@dataclass(frozen=True, slots=True)
class Version:
    version: int
    generated_at: datetime
    expires_at: datetime
    basis_event: int


def listed(registry: Registry, *, limit: int = 100) -> list[Version]:
    table = models.ConfigurationVersion
    query = select(table.version, table.generated_at, table.expires_at, table.basis_event).order_by(
        table.version.desc()
    )
    with registry.session() as session:
        return [Version(*row) for row in session.execute(query.limit(limit))]


def payload(document: bytes) -> str:
    """The configuration a compact JWS carries, as sorted, indented JSON."""
    body = document.split(b".")[1]
    data = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def diff(registry: Registry, older: int, newer: int) -> list[str]:
    """The unified diff of version ``older``'s configuration to ``newer``'s."""
    with registry.session() as session:
        texts = []
        for number in (older, newer):
            row = session.get(models.ConfigurationVersion, number)
            if row is None:
                raise NotFound(f"version {number} is not kept", detail=str(number))
            texts.append(payload(row.document).splitlines())
    lines = list(
        difflib.unified_diff(
            texts[0], texts[1], f"version {older}", f"version {newer}", lineterm=""
        )
    )
    return lines[:MAX_DIFF_LINES]
