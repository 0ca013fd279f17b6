"""A timestamping authority's data folder: ``tsa.key`` (0600), ``tsa.csr``, ``tsa.pem`` (from the
central authority) and ``tsa.json`` (its name and policy OID)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from exchange import keyfolder
from exchange.identifiers import check_segment
from exchange.tsa.tokens import Authority


def initialise(folder: Path, name: str) -> Path:
    """Make the key, the CSR and a policy OID (under 2.25, the UUID arc: no registry needed)."""
    check_segment(name, "timestamping authority name")
    csr = keyfolder.new_key(folder, "tsa", label=name)
    (folder / "tsa.json").write_text(
        json.dumps({"name": name, "policy": f"2.25.{uuid.uuid4().int}"}) + "\n"
    )
    return csr


def load(folder: Path) -> Authority:
    hint = "run 'exchange tsa init' and have it certified"
    key, certificate = keyfolder.pair(folder, "tsa", hint=hint)
    keyfolder.require(folder, ("tsa.json",), hint=hint)
    identity = json.loads((folder / "tsa.json").read_text())
    return Authority(key=key, certificate=certificate, policy=identity["policy"])
