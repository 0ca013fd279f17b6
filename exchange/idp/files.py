"""The development identity provider's folder: ``idp.key`` (0600) and ``idp.json`` (issuer,
registered clients and their redirect URIs, test citizens, test staff with their roles)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from exchange import keyfolder
from exchange.idp.provider import Citizen, IdentityProvider, Staff
from exchange.trust.keys import generate_key


def initialise(
    folder: Path,
    *,
    issuer: str,
    clients: Mapping[str, Sequence[str]],
    citizens: Sequence[Citizen],
    staff: Sequence[Staff] = (),
) -> None:
    keyfolder.write_key(keyfolder.create(folder) / "idp.key", generate_key())
    document = {
        "issuer": issuer,
        "clients": {client: list(uris) for client, uris in clients.items()},
        "citizens": [
            {"code": c.code, "given_name": c.given_name, "family_name": c.family_name}
            for c in citizens
        ],
        "staff": [{"username": s.username, "name": s.name, "roles": list(s.roles)} for s in staff],
    }
    (folder / "idp.json").write_text(json.dumps(document, indent=2) + "\n")


def load(folder: Path, *, clock: Callable[[], datetime]) -> IdentityProvider:
    keyfolder.require(folder, ("idp.json", "idp.key"), hint="run 'exchange idp init' first")
    document = json.loads((folder / "idp.json").read_text())
    return IdentityProvider(
        issuer=document["issuer"],
        key=keyfolder.ec_key(folder / "idp.key"),
        clients=document["clients"],
        citizens=[Citizen(**c) for c in document["citizens"]],
        staff=[
            Staff(s["username"], s["name"], tuple(s["roles"])) for s in document.get("staff", [])
        ],
        clock=clock,
    )
