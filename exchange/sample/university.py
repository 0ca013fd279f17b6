"""A sample university's existing REST backend for its diplomas, which the university's gateway
reaches through the HTTP connector (``GET /diplomas/{person}``)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

UNIVERSITY = {"name": "University of Tartu", "registryCode": "74001073"}

DIPLOMAS: dict[str, dict[str, Any]] = {
    "EE38001085718": {
        "personCode": "EE38001085718",
        "givenName": "Mari",
        "familyName": "Tamm",
        "institution": UNIVERSITY,
        "qualification": {"title": "Master of Science in Informatics", "level": "master"},
        "fieldOfStudy": "Informatics",
        "awardedOn": "2004-06-18",
        "diplomaNumber": "MA-2004-1187",
    },
    "EE39107156021": {
        "personCode": "EE39107156021",
        "givenName": "Jaan",
        "familyName": "Kask",
        "institution": UNIVERSITY,
        "qualification": {"title": "Bachelor of Arts in History", "level": "bachelor"},
        "fieldOfStudy": "History",
        "awardedOn": "2014-06-20",
        "diplomaNumber": "BA-2014-0311",
    },
    "EE50203110012": {
        "personCode": "EE50203110012",
        "givenName": "Sofia",
        "familyName": "Mets",
        "institution": UNIVERSITY,
        "qualification": {"title": "Bachelor of Science in Mathematics", "level": "bachelor"},
        "fieldOfStudy": "Mathematics",
        "awardedOn": "2024-06-14",
        "diplomaNumber": "BS-2024-0528",
    },
}


def create_app() -> Starlette:
    async def diploma(request: Request) -> JSONResponse:
        found = DIPLOMAS.get(request.path_params["person"])
        if found is None:
            return JSONResponse({"error": "no diploma"}, status_code=404)
        return JSONResponse(found)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/diplomas/{person}", diploma), Route("/health", health)])
