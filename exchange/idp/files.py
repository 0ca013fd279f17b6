"""The development identity provider's folder: ``idp.key`` (0600) and ``idp.json`` (issuer,
registered clients and their redirect URIs, test citizens)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from exchange.errors import NotFound
from exchange.idp.provider import Citizen, IdentityProvider
from exchange.trust.keys import generate_key, load_private_key, write_private_key


def initialise(
    folder: Path, *, issuer: str, clients: Mapping[str, Sequence[str]], citizens: Sequence[Citizen]
) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private_key(folder / "idp.key", generate_key())
    document = {
        "issuer": issuer,
        "clients": {client: list(uris) for client, uris in clients.items()},
        "citizens": [
            {"code": c.code, "given_name": c.given_name, "family_name": c.family_name}
            for c in citizens
        ],
    }
    (folder / "idp.json").write_text(json.dumps(document, indent=2) + "\n")


def load(folder: Path, *, clock: Callable[[], datetime]) -> IdentityProvider:
    if not (folder / "idp.json").exists():
        raise NotFound(f"no identity provider in {folder}; run 'exchange idp init' first")
    document = json.loads((folder / "idp.json").read_text())
    key = load_private_key(folder / "idp.key")
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("the identity provider's key must be EC P-256")
    return IdentityProvider(
        issuer=document["issuer"],
        key=key,
        clients=document["clients"],
        citizens=[Citizen(**c) for c in document["citizens"]],
        clock=clock,
    )
