"""The benchmark's baseline: the register's query answered directly over plain HTTP, no gateway.

Served in a process of its own (``python -m bench.baseline --registry FILE --port N``) by the
gateways' own server stack (``exchange.serving``: uvicorn on uvloop with httptools, the same
options, the garbage collector frozen after start-up), so that the ratio compares the exchange
with a direct call served the same way, never with one sharing the load generator's loop.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from exchange import serving
from exchange.sample import population


def direct_registry(path: Path) -> Starlette:
    """The same query and JSON as the provider's connector, straight from the register."""
    database = sqlite3.connect(path, check_same_thread=False)
    database.row_factory = sqlite3.Row
    query = population.BIRTH_QUERY.replace(":person", "?")

    async def birth(request: Request) -> Response:
        row = database.execute(query, (request.query_params["person"],)).fetchone()
        if row is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(dict(row))

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/births", birth), Route("/health", health)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", type=Path, required=True, help="the register's SQLite file")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = direct_registry(args.registry)
    serving.run(serving.serve_all([serving.config(app, host="127.0.0.1", port=args.port)]))


if __name__ == "__main__":
    main()
