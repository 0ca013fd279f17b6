"""The demo business register's document backend: each company's extract as a small PDF, which
the register's gateway offers as the EDM company extract's PDF distribution (docs/oots.md).

An agency's document store answers as the gateways require (docs/operations.md, "Large
documents"): ``200`` with ``Content-Type``, ``Content-Length`` and the document's SHA-256 as RFC
9530 ``Repr-Digest``, before the body. The PDF is drawn up here from the register's sample data,
one page of text in a standard font, so the demo needs no PDF library.
"""

from __future__ import annotations

import base64
import hashlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange.sample import business

MEDIA_TYPE = "application/pdf"


def _text(value: str) -> bytes:
    """``value`` as a PDF string in the standard fonts' encoding (Latin-1 covers the sample's
    Estonian names)."""
    escaped = value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1", "replace") + b")"


def pdf(title: str, lines: list[str]) -> bytes:
    """A one-page PDF 1.4 document: ``title`` and ``lines`` of text, Helvetica."""
    shown = [b"BT /F1 16 Tf 56 780 Td " + _text(title) + b" Tj ET"]
    shown += [
        b"BT /F1 11 Tf 56 %d Td " % (740 - 18 * number) + _text(line) + b" Tj ET"
        for number, line in enumerate(lines)
    ]
    content = b"\n".join(shown)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    document = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(document))
        document += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(document)
    document += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    document += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    document += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    return document + b"startxref\n%d\n%%%%EOF\n" % xref


def extract(code: str) -> bytes | None:
    """The company ``code``'s extract as a PDF; None for a company the register does not hold."""
    for company in business.COMPANIES:
        if company[0] == code:
            registry_code, name, form, status, registered, street, building, postal, town, _ = (
                company
            )
            return pdf(
                "Extract of the Commercial Register",
                [
                    f"Name: {name}",
                    f"Registry code: {registry_code}",
                    f"Legal form: {form}",
                    f"Status: {status}",
                    f"Registered on: {registered}",
                    f"Address: {street} {building}, {postal} {town}",
                    "Business Register (demo data)",
                ],
            )
    return None


def create_app() -> Starlette:
    async def company(request: Request) -> Response:
        document = extract(request.path_params["code"])
        if document is None:
            return JSONResponse({"error": "no such company"}, status_code=404)
        digest = base64.b64encode(hashlib.sha256(document).digest()).decode("ascii")
        return Response(
            document, media_type=MEDIA_TYPE, headers={"Repr-Digest": f"sha-256=:{digest}:"}
        )

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/extracts/{code}.pdf", company), Route("/health", health)])
