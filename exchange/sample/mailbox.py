"""The demo's mailbox: an SMTP server on loopback that files each message it is given.

``exchange demo`` turns on the portal's e-mail to citizens (docs/notifications.md) and points it
here, so that whoever runs the demo can read what a citizen would receive, without a mail server
of their own: each message lands in a folder as an ``.eml`` file that any mail program opens.
The folder and its files are private to the demo's user: the messages speak of people.

The server is aiosmtpd's, installed with the development extras (``make demo`` installs them);
without it the demo runs with e-mail off and says so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange import keyfolder


def available() -> bool:
    """Whether aiosmtpd is installed (without it the demo keeps e-mail off)."""
    return importlib.util.find_spec("aiosmtpd") is not None


class _Filing:
    """aiosmtpd's handler: one ``.eml`` file per message, named by its arrival."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._count = itertools.count(1)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        at = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path = self._folder / f"{at}-{next(self._count):04d}.eml"
        await asyncio.to_thread(keyfolder.write_private, path, envelope.original_content or b"")
        return "250 Message accepted for delivery"


def mailbox(folder: Path, port: int) -> Callable[[], Coroutine[Any, Any, None]]:
    """A background job serving the mailbox on 127.0.0.1:``port`` until it is cancelled."""
    from aiosmtpd.smtp import SMTP

    async def serve() -> None:
        keyfolder.create(folder)
        handler = _Filing(folder)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="demo-mailbox"), "127.0.0.1", port
        )
        try:
            await asyncio.Event().wait()  # until the demo stops
        finally:
            server.close()
            await server.wait_closed()

    return serve
