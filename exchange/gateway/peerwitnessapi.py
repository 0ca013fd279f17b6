"""The peer witness's routes on the provider listener (:mod:`exchange.gateway.peerwitness`).

The authority's protocol (docs/protocol.md, "Witness"), reached by other gateways over mutual
TLS. Errors are answered by the listener's boundary with the X-Road error body, as every answer
of this listener is.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from exchange.errors import InvalidRequest, NotFound
from exchange.gateway.node import Gateway
from exchange.http import read_body

MAX_SUBMISSION = 64 * 1024  # a head and a proof of at most 128 hashes fit in a few kB


def routes(gateway: Gateway) -> list[Route]:
    witness = gateway.peer_witness

    async def submit(request: Request) -> JSONResponse:
        raw = await read_body(
            request.stream(),
            content_length=request.headers.get("content-length"),
            max_bytes=MAX_SUBMISSION,
        )
        try:
            body: Any = json.loads(raw)
            head, from_size, proof = body["head"], body.get("from_size"), body.get("proof") or []
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidRequest("the body must be a tree head with a consistency proof") from exc
        if not isinstance(head, dict) or not isinstance(proof, list):
            raise InvalidRequest("the body must be a tree head with a consistency proof")
        if from_size is not None and type(from_size) is not int:
            raise InvalidRequest("from_size must be a whole number", detail="from_size")
        cosignature = await gateway.in_thread(
            witness.submit, head, from_size=from_size, proof=proof
        )
        return JSONResponse({"cosignature": cosignature})

    async def held(request: Request) -> JSONResponse:
        chain = request.query_params.get("chain")
        if not chain:
            raise InvalidRequest("chain is required", detail="chain")
        latest = await gateway.in_thread(witness.latest, chain)
        if latest is None:
            raise NotFound("the witness holds no head of this chain")
        return JSONResponse(latest)

    async def forks(_: Request) -> JSONResponse:
        return JSONResponse(await gateway.in_thread(witness.forks))

    return [
        Route("/witness/v1/heads", submit, methods=["POST"]),
        Route("/witness/v1/heads", held, methods=["GET"]),
        Route("/witness/v1/forks", forks, methods=["GET"]),
    ]
