"""Read access to this replica's audit chain: signed tree heads and Merkle proofs.

``GET /audit/heads``                      the signed (and timestamped) heads, oldest first
``GET /audit/records/{seq}/proof[?size=]`` a record with its inclusion proof: the receipt;
                                          against the newest witnessed head that covers it
                                          by default, else the newest signed one
``GET /audit/consistency?from=&to=``      a consistency proof between two signed heads

A receipt is checked with :func:`audit.merkle.verify_inclusion` against the head's root, and
the head with the member's certificate and the TSA's token: nothing here needs to be trusted.
Served on the consumer listener (the member's own network); persons' records are found through
the citizen usage API, not here.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from audit.heads import receipt_heads
from audit.models import AuditRecord, TreeHead
from audit.receipt import head_document, make_receipt
from exchange.errors import InvalidRequest, NotFound
from exchange.gateway.node import Gateway

_NUMBER = re.compile(r"[0-9]{1,12}")


def _int(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not _NUMBER.fullmatch(raw):
        raise InvalidRequest(f"{name} must be a whole number", detail=name)
    return int(raw)


def routes(gateway: Gateway) -> list[Route]:
    chain = gateway.audit.chain

    def heads_of(session: Session) -> list[TreeHead]:
        return list(
            session.scalars(select(TreeHead).where(TreeHead.chain == chain).order_by(TreeHead.size))
        )

    def answer(work: Any) -> Any:
        async def endpoint(request: Request) -> JSONResponse:
            # An Error raised here is answered by the listener's boundary (exchanges_first).
            return JSONResponse(await gateway.in_thread(work, request))

        return endpoint

    def heads(_: Request) -> list[dict[str, Any]]:
        with Session(gateway.engine) as session:
            return [head_document(h) for h in heads_of(session)]

    def inclusion(request: Request) -> dict[str, Any]:
        seq = int(request.path_params["seq"])
        if seq > 10**12:
            raise NotFound(f"no record {seq} in chain {chain}")
        wanted = _int(request, "size")
        with Session(gateway.engine) as session:
            if wanted is None:
                head = receipt_heads(session, chain).covering(seq)
            else:
                head = session.get(TreeHead, (chain, wanted))
                head = head if head is not None and head.size > seq else None
            record = session.get(AuditRecord, (chain, seq))
        if record is None:
            raise NotFound(f"no record {seq} in chain {chain}")
        if head is None:
            raise NotFound("no signed head covers this record yet; ask again after the next head")
        proof = gateway.audit.tree.inclusion_proof(seq, head.size)
        return make_receipt(chain=chain, seq=seq, body=record.body, proof=proof, head=head)

    def consistency(request: Request) -> dict[str, Any]:
        old, new = _int(request, "from"), _int(request, "to")
        if old is None or new is None:
            raise InvalidRequest("from and to are required", detail="from")
        with Session(gateway.engine) as session:
            sizes = {h.size: h for h in heads_of(session)}
        if old not in sizes or new not in sizes or not 0 < old <= new:
            raise NotFound("both sizes must be those of signed heads, the first not larger")
        proof = gateway.audit.tree.consistency_proof(old, new)
        return {
            "from": head_document(sizes[old]),
            "to": head_document(sizes[new]),
            "proof": [p.hex() for p in proof],
        }

    return [
        Route("/audit/heads", answer(heads)),
        Route("/audit/records/{seq:int}/proof", answer(inclusion)),  # seq checked below
        Route("/audit/consistency", answer(consistency)),
    ]
