"""URL path segments that every reader reads alike.

A value placed in one segment of a URL path (an HTTP connector's parameter, a segment of an
address citizens are sent back to) must stay that one segment for every program on its way: the
backend, a proxy in front of it that percent-decodes once more, a framework that folds Unicode.
:func:`segment_problem` says what would let one of them read another path.

What is *not* checked here: characters that are merely unusual (the caller percent-encodes or
compares as it needs), and whole paths (callers split them on ``/`` first).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def segment_problem(segment: str) -> str | None:
    """Why ``segment`` might be read as something other than one path segment, or None.

    The segment is percent-decoded again and again until nothing changes (a proxy may turn
    ``%252F`` into ``%2F`` and the backend that into ``/``). No stage, nor its NFKC form
    (fullwidth ``／`` folds to ``/``), may be empty, ``.`` or ``..``, hold ``/`` or ``\\`` or a
    control character; percent-encoded bytes must be UTF-8.
    """
    stage = segment
    while True:
        folded = unicodedata.normalize("NFKC", stage)
        for reading in (stage, folded):
            if reading in ("", ".", ".."):
                return "is empty or a dot segment"
            if "/" in reading or "\\" in reading:
                return "holds a slash or a backslash"
            if _CONTROL.search(reading):
                return "holds a control character"
        try:  # the folded form: fullwidth "％２Ｆ" folds to "%2F", which decodes to "/"
            decoded = unquote(folded, errors="strict")
        except UnicodeDecodeError:
            return "holds percent-encoded bytes that are not UTF-8"
        if decoded == stage:  # nothing left to decode or fold
            return None
        stage = decoded
