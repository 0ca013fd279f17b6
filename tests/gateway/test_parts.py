"""Parts of a streamed answer (:mod:`exchange.gateway.parts`): the declared layout is parsed
strictly, and a body passes whole only when every part and the envelope are as bound; the last
chunk is held back until then, so a reader never receives a complete wrong body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from exchange.errors import InvalidResponse
from exchange.gateway.parts import Part, Streamed, format_parts, parse_parts, verified
from exchange.trust.signed import body_digest

HEAD, DOCUMENT, TAIL = b"<envelope>", b"%PDF-1.7 " + bytes(range(256)) * 40, b"</envelope>"
BODY = HEAD + DOCUMENT + TAIL
PART = Part(len(HEAD), len(DOCUMENT), body_digest(DOCUMENT))


def streamed(body: bytes, *, part: Part = PART, envelope: bytes = HEAD + TAIL) -> Streamed:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1000):  # chunks that straddle the part's edges
            yield body[start : start + 1000]

    async def close() -> None:
        return None

    return Streamed(
        parts=(part,),
        length=len(BODY),
        envelope=body_digest(envelope),
        chunks=chunks(),
        close=close,
        broken=InvalidResponse,
        what="gateway X",
    )


def passed(stream: Streamed) -> tuple[bytes, InvalidResponse | None]:
    """What a reader receives of ``stream``, and the error that cut it short, if any."""
    received = bytearray()

    async def read() -> None:
        async for chunk in verified(stream):
            received.extend(chunk)

    try:
        asyncio.run(read())
    except InvalidResponse as error:
        return bytes(received), error
    return bytes(received), None


def test_a_body_as_bound_passes_whole() -> None:
    assert passed(streamed(BODY)) == (BODY, None)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (HEAD + DOCUMENT[:-1] + b"X" + TAIL, "whose SHA-256 differs"),
        (HEAD + DOCUMENT + TAIL[:-1] + b"X", "envelope that differs"),
        (BODY[:-5], "cut short"),
        (BODY + b"more", "more than"),
    ],
)
def test_a_body_other_than_bound_never_reaches_its_reader_complete(body: bytes, why: str) -> None:
    received, error = passed(streamed(body))
    assert error is not None
    assert why in error.message
    assert len(received) < len(BODY)
    assert BODY.startswith(received)  # what passed before the end was not yet known to be wrong


def test_the_declared_parts_are_parsed() -> None:
    header = format_parts((PART,))
    assert parse_parts(header, length=len(BODY), max_part_bytes=len(DOCUMENT)) == (PART,)


DIGEST = PART.digest


@pytest.mark.parametrize(
    ("declared", "limit", "why"),
    [
        ("", 100, "between 1 and 16"),
        (",".join(f"{i}:1:{DIGEST}" for i in range(17)), 100, "between 1 and 16"),
        (f"0:10:{DIGEST},5:10:{DIGEST}", 100, "overlap"),
        (f"0:101:{DIGEST}", 1000, "outside the body"),
        (f"0:50:{DIGEST}", 49, "larger than 49 bytes"),
        (f"0:50:{DIGEST[:-1]}", 100, "not OFFSET:LENGTH:SHA-256"),
        (f" 0:50:{DIGEST}", 100, "not OFFSET:LENGTH:SHA-256"),
    ],
)
def test_a_declared_layout_out_of_form_or_bounds_is_refused(
    declared: str, limit: int, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        parse_parts(declared, length=100, max_part_bytes=limit)
