"""The demo business register's PDF extracts (exchange/sample/documents.py): well-formed PDFs a
reader opens, served with the length and SHA-256 the gateways bind."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx

from exchange.sample import business, documents
from tests.inprocess import LoopThread, listen
from tests.servers import free_port


def test_each_company_has_an_extract_whose_cross_references_point_at_its_objects() -> None:
    code, name = business.COMPANIES[0][:2]
    extract = documents.extract(code)
    assert extract is not None
    assert extract.startswith(b"%PDF-1.4")
    assert extract.endswith(b"%%EOF\n")
    assert name.encode("latin-1") in extract  # Tamm & Kask OÜ, in the font's encoding
    start = int(extract.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    assert extract[start:].startswith(b"xref\n")
    offsets = re.findall(rb"(\d{10}) 00000 n ", extract[start:])
    assert len(offsets) == 5
    for number, offset in enumerate(offsets, start=1):
        assert extract[int(offset) :].startswith(b"%d 0 obj\n" % number)
    assert documents.extract("00000000") is None


def test_the_store_declares_the_length_and_sha256_before_the_body() -> None:
    code = business.COMPANIES[0][0]
    port = free_port()
    loop = LoopThread("documents")
    listener = loop.run(listen(documents.create_app(), port))
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            answer = client.get(f"/extracts/{code}.pdf")
            missing = client.get("/extracts/00000000.pdf")
    finally:
        loop.run(listener.stop())
        loop.stop()
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pdf"
    assert int(answer.headers["content-length"]) == len(answer.content)
    digest = base64.b64encode(hashlib.sha256(answer.content).digest()).decode()
    assert answer.headers["repr-digest"] == f"sha-256=:{digest}:"
    assert missing.status_code == 404
