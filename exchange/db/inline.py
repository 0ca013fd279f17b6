"""A connection of the event loop's own to a local SQLite file, for statements that never wait.

A point read or a one-row insert without an fsync takes SQLite a few tens of microseconds, less
than handing it to a worker thread and back. Run on the loop, such a statement must never block
it: the connection made here is detached from the engine's pool (its settings never reach the
threads' connections), its busy timeout is 0 (a lock held by another writer fails it at once),
and it never checkpoints the write-ahead log (a checkpoint may fsync; the engine's other
connections do it). Callers run the statement again on a thread when it fails, so a busy or slow
database costs an attempt, never a stall. It is opened on a thread (opening runs the engine's
set-up, which may wait for a lock); the driver lets it be used on another thread after that, one
at a time.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, make_url


def suits(engine: Engine) -> bool:
    """A file database through the standard driver (not an in-memory one: each connection to
    ``:memory:`` is a database of its own)."""
    database = make_url(str(engine.url)).database or ""
    return (
        engine.dialect.name == "sqlite"
        and engine.dialect.driver == "pysqlite"
        and database not in {"", ":memory:"}
        and not database.startswith("file:")
    )


def open_for_the_loop(engine: Engine) -> Any:
    """On a thread: a new connection of ``engine`` (see :func:`suits`), configured as the module
    docstring says. It is the caller's to close."""
    pooled = engine.raw_connection()
    pooled.detach()
    connection: Any = pooled.dbapi_connection  # a sqlite3.Connection
    connection.execute("PRAGMA busy_timeout=0")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    return connection


Error = sqlite3.Error  # what a statement on such a connection raises
