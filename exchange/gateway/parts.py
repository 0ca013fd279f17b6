"""Large answers: parts bound by digest and length, streamed through a gateway and checked.

A large piece of evidence (a PDF scan, a diploma supplement) is never held whole by a gateway.
The answer's signature cannot bind a digest of the whole body, which is only known once the
last byte has passed; it binds instead, before the first byte leaves:

- each large *part*: its offset in the body, its length and its SHA-256, as the registry
  declared them (header ``X-Exchange-Parts``: ``OFFSET:LENGTH:DIGEST`` items, comma-separated,
  the digest base64url as :func:`~exchange.trust.signed.body_digest` writes it);
- the *envelope*: the SHA-256 of every byte outside the parts (the ``body`` claim), and the
  whole body's length (``Content-Length``, which the parts and the envelope add up to).

:func:`verified` passes a body on chunk by chunk while it hashes each part and the envelope,
and holds the last chunk back until lengths and digests are found equal: a body that differs
from what was bound, is longer or is cut short never reaches its reader complete (the caller
aborts the connection instead). What a reader receives whole is exactly what was signed.

What is *not* checked here: the signature over these claims (:mod:`exchange.gateway.signing`)
and whose fault a mismatch is (the caller's ``broken`` class says so).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from exchange import jws
from exchange.errors import ServiceFailed

HEADER = "X-Exchange-Parts"
MAX_PARTS = 16  # one answer binds a few documents, not an archive
_ITEM = re.compile(r"([0-9]{1,15}):([0-9]{1,15}):([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class Part:
    offset: int
    length: int
    digest: str  # base64url SHA-256, unpadded


@dataclass(frozen=True, slots=True)
class Streamed:
    """A body that passes through in chunks: ``length`` bytes in all, ``parts`` bound by
    digest, ``envelope`` the digest of the bytes outside them. ``close`` releases the source
    (a connection) whether or not the body was read to its end."""

    parts: tuple[Part, ...]
    length: int
    envelope: str
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]
    broken: type[ServiceFailed]  # whose fault a mismatch is, as the caller sees it
    what: str  # who sent the body, as an error message names them

    @property
    def header(self) -> str:
        return format_parts(self.parts)


def format_parts(parts: tuple[Part, ...]) -> str:
    return ",".join(f"{p.offset}:{p.length}:{p.digest}" for p in parts)


def parse_parts(value: str, *, length: int, max_part_bytes: int) -> tuple[Part, ...]:
    """The parts ``value`` declares of a body of ``length`` bytes: each at most
    ``max_part_bytes``, in order, apart from each other and inside the body; else ValueError."""
    items = value.split(",")
    if not value or len(items) > MAX_PARTS:
        raise ValueError(f"between 1 and {MAX_PARTS} parts may be declared")
    parts: list[Part] = []
    end = 0
    for item in items:
        found = _ITEM.fullmatch(item)
        if found is None:
            raise ValueError("a part is not OFFSET:LENGTH:SHA-256")
        part = Part(int(found[1]), int(found[2]), found[3])
        if part.length > max_part_bytes:
            raise ValueError(f"a part is larger than {max_part_bytes} bytes")
        if part.offset < end or part.offset + part.length > length:
            raise ValueError("parts overlap, are out of order or lie outside the body")
        end = part.offset + part.length
        parts.append(part)
    return tuple(parts)


async def verified(streamed: Streamed) -> AsyncIterator[bytes]:
    """``streamed``'s chunks, each passed on as soon as the next one arrives; the last only
    once the whole body is found as bound. Raises ``streamed.broken`` at the first sign that
    it is not (too long at once; too short, or a digest differs, at the end)."""
    parts, length = streamed.parts, streamed.length
    outside = hashlib.sha256()
    inside = [hashlib.sha256() for _ in parts]
    position = 0
    held = b""
    async for chunk in streamed.chunks:
        if not chunk:
            continue
        end = position + len(chunk)
        if end > length:
            raise streamed.broken(f"{streamed.what} sent more than the {length} bytes it bound")
        _hash(memoryview(chunk), position, parts, outside, inside)
        position = end
        if held:
            yield held
        held = chunk
    if position != length:
        raise streamed.broken(
            f"{streamed.what} sent {position} of the {length} bytes it bound (cut short)"
        )
    for part, digest in zip(parts, inside, strict=True):
        if jws.b64url(digest.digest()) != part.digest:
            raise streamed.broken(
                f"{streamed.what} sent a part (offset {part.offset}) whose SHA-256 differs "
                "from the one it bound"
            )
    if jws.b64url(outside.digest()) != streamed.envelope:
        raise streamed.broken(f"{streamed.what} sent an envelope that differs from its signature")
    if held:
        yield held


def _hash(
    chunk: memoryview,
    start: int,
    parts: tuple[Part, ...],
    outside: hashlib._Hash,
    inside: list[hashlib._Hash],
) -> None:
    """Feed the bytes of ``chunk`` (at ``start`` in the body) to their part's hash or the
    envelope's; parts are ordered and apart (:func:`parse_parts`)."""
    end = start + len(chunk)
    cursor = start
    for part, digest in zip(parts, inside, strict=True):
        low, high = max(cursor, part.offset), min(end, part.offset + part.length)
        if low >= high:
            continue
        if low > cursor:
            outside.update(chunk[cursor - start : low - start])
        digest.update(chunk[low - start : high - start])
        cursor = high
    if cursor < end:
        outside.update(chunk[cursor - start :])
