"""Rows appended by a writer thread: one compiled INSERT, the DBAPI's ``executemany``, a kept
connection.

SQLAlchemy Core compiles (from its cache), builds and processes every row's parameters and
checks a pooled connection out and in again at each ``execute``: for a writer that appends the
same columns batch after batch, that was more CPU than the database's own work (a one-row audit
append on SQLite: ~480 us through Core, ~220 us through the cursor; docs/performance.md).

:class:`BulkInsert` compiles the statement once for the engine's dialect and converts each value
with the bind processor SQLAlchemy itself would use (so stored values read back exactly as
before). :class:`KeptConnection` keeps one pooled connection checked out by the one thread that
writes through it. What the pool's check-out did per batch is kept where it matters: a failed
batch rolls back and gives the connection up (the next batch gets a fresh one, checked by the
pool as before), and a batch whose connection was found dead before anything was committed is
run once more on a fresh one, as the pool's pre-ping would have replaced it before the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, Table, insert
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import PoolProxiedConnection


class BulkInsert:
    """``INSERT INTO`` a mapped class's table ``(columns) VALUES (...)``, for rows given as
    tuples in ``columns``' order."""

    def __init__(self, engine: Engine, mapped: type[Any], columns: Sequence[str]) -> None:
        table = mapped.__table__
        if not isinstance(table, Table):
            raise TypeError(f"{mapped.__name__} is not mapped to a table")
        dialect = engine.dialect
        # inline(): no RETURNING of generated keys (PostgreSQL would add it for the id).
        compiled = insert(table).inline().compile(dialect=dialect, column_keys=list(columns))
        if set(compiled.binds) != set(columns):
            raise ValueError(f"{table.name}: the statement binds {sorted(compiled.binds)}")
        self.sql = str(compiled)
        processors = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
        ]
        self._convert = [(index, process) for index, process in enumerate(processors) if process]
        if compiled.positional:  # qmark (sqlite3): values in the statement's order
            order = [list(columns).index(name) for name in compiled.positiontup or ()]
            self._shape: Callable[[list[Any]], Any] = lambda values: [values[i] for i in order]
        else:  # pyformat (psycopg): values by name
            names = list(columns)
            self._shape = lambda values: dict(zip(names, values, strict=True))

    def parameters(self, rows: Iterable[Sequence[Any]]) -> list[Any]:
        shaped = []
        for row in rows:
            values = list(row)
            for index, process in self._convert:
                values[index] = process(values[index])
            shaped.append(self._shape(values))
        return shaped

    def execute(self, connection: DBAPIConnection, rows: Iterable[Sequence[Any]]) -> None:
        cursor = connection.cursor()
        try:
            cursor.executemany(self.sql, self.parameters(rows))
        finally:
            cursor.close()


class KeptConnection:
    """One pooled connection, kept checked out by the thread that writes through it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: PoolProxiedConnection | None = None

    def transaction(self, work: Callable[[DBAPIConnection], None]) -> None:
        """Run ``work`` on the connection and commit; roll back and raise if anything fails."""
        connection = self._checked_out()
        try:
            work(connection.driver_connection)  # type: ignore[arg-type]
        except Exception as exc:
            if not self._dead(exc, connection):
                self._give_up(connection)
                raise
            # Found dead before anything was committed: nothing of the batch is in the database.
            self._give_up(connection)
            connection = self._checked_out()
            try:
                work(connection.driver_connection)  # type: ignore[arg-type]
            except Exception:
                self._give_up(connection)
                raise
        try:
            connection.commit()
        except Exception:
            self._give_up(connection)
            raise

    def _checked_out(self) -> PoolProxiedConnection:
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        return self._connection

    def _dead(self, exc: Exception, connection: PoolProxiedConnection) -> bool:
        dbapi = self._engine.dialect.loaded_dbapi
        return isinstance(exc, dbapi.Error) and self._engine.dialect.is_disconnect(
            exc, connection.driver_connection, None
        )

    def _give_up(self, connection: PoolProxiedConnection) -> None:
        """Roll back and leave the connection to the pool: a fresh one serves the next batch."""
        self._connection = None
        try:
            connection.rollback()
        except Exception:  # a dead connection: the pool forgets it
            connection.invalidate()
        connection.close()

    def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()
