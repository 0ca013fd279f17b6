"""A timestamping authority's data folder: ``tsa.key`` (0600), ``tsa.csr``, ``tsa.pem`` (from the
central authority) and ``tsa.json`` (its name and policy OID)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from exchange.errors import NotFound
from exchange.identifiers import check_segment
from exchange.trust.keys import (
    build_csr,
    csr_pem,
    generate_key,
    load_certificate,
    load_private_key,
    write_private_key,
)
from exchange.tsa.tokens import Authority


def initialise(folder: Path, name: str) -> Path:
    """Make the key, the CSR and a policy OID (under 2.25, the UUID arc: no registry needed)."""
    check_segment(name, "timestamping authority name")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = generate_key()
    write_private_key(folder / "tsa.key", key)
    (folder / "tsa.csr").write_text(csr_pem(build_csr(key, name)))
    (folder / "tsa.json").write_text(
        json.dumps({"name": name, "policy": f"2.25.{uuid.uuid4().int}"}) + "\n"
    )
    return folder / "tsa.csr"


def load(folder: Path) -> Authority:
    for name in ("tsa.key", "tsa.pem", "tsa.json"):
        if not (folder / name).exists():
            raise NotFound(
                f"{folder / name} is missing; run 'exchange tsa init' and have it certified"
            )
    identity = json.loads((folder / "tsa.json").read_text())
    return Authority(
        key=load_private_key(folder / "tsa.key"),
        certificate=load_certificate(folder / "tsa.pem"),
        policy=identity["policy"],
    )
