"""Build SQLAlchemy engines from a URL.

SQLite is the embedded default (one file in the role's data folder, WAL journal, foreign keys
on, the file 0600 and a folder it creates 0700); PostgreSQL is used by URL. Engines are built
only when a role starts, never at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Insert, create_engine, event
from sqlalchemy.engine import make_url


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 (its folder 0700) unless it exists. An existing one
    keeps the mode its operator chose (a backup group may read it), except that one an older
    version left open to every local user is closed to them. SQLite gives its ``-wal`` and
    ``-shm`` files the database's mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        found = path.stat()
        if found.st_mode & 0o007 and found.st_uid == os.getuid():
            path.chmod(found.st_mode & 0o770)


SYNCHRONOUS = ("FULL", "NORMAL")


def build_engine(
    url: str, *, sqlite_synchronous: str = "FULL", flushed: bool = True, **kwargs: Any
) -> Engine:
    """Create an engine for ``url`` with the settings each backend needs.

    SQLite runs in WAL mode. ``FULL`` (the default) makes every commit survive a power loss;
    ``NORMAL`` makes it survive a crash of the process (SIGKILL included) but not of the machine,
    and saves an fsync per commit.

    ``flushed=False`` builds an engine whose commits do not wait for the disk (SQLite
    ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``). Both logs are written in
    order, so such a commit becomes durable with the next flushed commit to the same database:
    for writes that matter only once a flushed commit follows them (see
    :mod:`exchange.gateway.replay`), or that may be lost (operational records).
    """
    if sqlite_synchronous not in SYNCHRONOUS:
        raise ValueError(f"sqlite_synchronous must be one of {SYNCHRONOUS}")
    if not flushed:
        sqlite_synchronous = "NORMAL"
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database))
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        def configure(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        event.listen(engine, "connect", configure)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # A bare postgresql:// URL means psycopg 3 here (psycopg2 is not a dependency).
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    engine = create_engine(url, pool_pre_ping=True, **kwargs)
    if not flushed:

        def unflushed(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET synchronous_commit TO OFF")
            cursor.close()
            dbapi_connection.commit()

        event.listen(engine, "connect", unflushed)
    return engine


def _insert(engine: Engine, table: Any) -> Any:
    """The backend's own ``INSERT`` construct for ``table`` (SQLite or PostgreSQL), which has
    ``ON CONFLICT``. Only that backend's dialect is imported: the other one would take ~2 MB of
    the process for nothing."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def insert_or_skip(engine: Engine, table: Any) -> Insert:
    """``INSERT ... ON CONFLICT DO NOTHING`` into ``table``."""
    return _insert(engine, table).on_conflict_do_nothing()  # type: ignore[no-any-return]


def insert_or_replace(engine: Engine, table: Any, values: dict[str, Any]) -> Insert:
    """``INSERT ... ON CONFLICT (primary key) DO UPDATE`` of every column in ``values``: one
    statement, so no column keeps a value a concurrent writer stored after this one read the row
    (what an ORM merge, which writes only the columns it saw change, lets through)."""
    keys = [column.name for column in table.__table__.primary_key.columns]
    statement = _insert(engine, table).values(**values)
    return statement.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=keys,
        set_={name: statement.excluded[name] for name in values if name not in keys},
    )
