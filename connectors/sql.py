"""SQL connector: one declared, parameterised query per service, on any SQLAlchemy URL.

Request values only ever reach the database as bound parameters of the declared query text, so
no request can change the statement: injection is impossible by construction. The query must
return at most one row; none is ``NotFound``, more than one is a registry fault.

Where the database is a local SQLite file, a read is first tried on the event loop itself
(:class:`InlineSqlite`): a point read there takes a few tens of microseconds, less than the
hand-off to a thread and back. That try never waits: it takes no lock it cannot have at once and
stops after :data:`INLINE_STEPS` steps of SQLite's virtual machine; then, or on any other error,
the query runs on a thread under the timeout, as it does for every other database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import (
    ConnectorRequest,
    Evidence,
    FieldMap,
    require_parameters,
)
from exchange.db import inline
from exchange.db.engine import build_engine
from exchange.errors import NotFound, ServiceFailed, ServiceTimeout
from exchange.faults import translate

# The most SQLite virtual-machine steps a read may take on the event loop (~1 ms or less): a
# lookup by key takes a few hundred; a scan or a join that takes more goes to a thread.
INLINE_STEPS = 20_000
_CHECK_EVERY = 500  # steps between two calls of the progress handler


class InlineSqlite:
    """A connection of the event loop's own to a local SQLite file, for reads that never wait.

    The connection (:mod:`exchange.db.inline`) fails at once on a lock held by a writer, and a
    progress handler interrupts it after :data:`INLINE_STEPS` steps. :meth:`read` then returns
    ``None`` and the caller asks again on a thread. The declared query is a read, so running it
    again is harmless; nothing is ever written through this connection. The connection is opened
    on a thread (:meth:`open`, after a first read there): opening runs the engine's set-up, which
    may wait for a lock.
    """

    def __init__(self, engine: Engine, statement: Any) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._order = tuple(compiled.positiontup or ())
        self._engine = engine
        self._connection: sqlite3.Connection | None = None
        self._opening = threading.Lock()
        self._checks = 0

    @staticmethod
    def suits(engine: Engine) -> bool:
        return inline.suits(engine)

    def open(self) -> None:
        """On a thread: the loop's connection, if it has none yet."""
        with self._opening:
            if self._connection is not None:
                return
            connection = inline.open_for_the_loop(self._engine)
            connection.set_progress_handler(self._over_budget, _CHECK_EVERY)
            self._connection = connection

    def _over_budget(self) -> int:
        self._checks += 1
        return int(self._checks * _CHECK_EVERY > INLINE_STEPS)

    def read(self, values: Mapping[str, str]) -> list[dict[str, Any]] | None:
        """At most two rows, or ``None`` if the read could not be done at once."""
        if self._connection is None:
            return None
        self._checks = 0
        try:
            cursor = self._connection.execute(self._sql, [values[name] for name in self._order])
            try:
                names = [column[0] for column in cursor.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchmany(2)]
            finally:
                cursor.close()  # ends the read: no snapshot is held between requests
        except sqlite3.Error:
            return None  # busy, interrupted or failing: the thread's run says which, if anything

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class SqlConnector:
    def __init__(
        self,
        *,
        url: str,
        query: str,
        parameters: tuple[str, ...],
        fields: Mapping[str, str] | None = None,
        json_columns: Sequence[str] = (),
        timeout: float = 5.0,
        engine: Engine | None = None,
    ) -> None:
        self._statement = text(query)
        declared = set(self._statement.compile().params)
        if declared != set(parameters):
            raise ValueError(
                f"query binds {sorted(declared)} but the service declares {sorted(parameters)}"
            )
        self._parameters = parameters
        self._field_map = FieldMap(fields)  # split once
        # Columns holding JSON text (lists such as a company's board members, built in SQL with
        # json_group_array): decoded before mapping. PostgreSQL json columns arrive decoded.
        self._json_columns = tuple(json_columns)
        self._timeout = timeout
        self._engine = engine if engine is not None else build_engine(url, pool_size=8)
        # Its own threads: a slow registry must not starve the event loop's default executor.
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sql-connector")
        self._inline = None
        if InlineSqlite.suits(self._engine):
            self._inline = InlineSqlite(self._engine, self._statement)

    def _run(self, values: dict[str, str], running: list[Any]) -> list[dict[str, Any]]:
        with self._engine.connect() as connection:
            running.append(connection.connection.dbapi_connection)
            result = connection.execute(self._statement, values).mappings().fetchmany(2)
            rows = [dict(row) for row in result]
        if self._inline is not None:
            self._inline.open()  # the next reads are tried on the loop
        return rows

    @staticmethod
    def _cancel(running: list[Any]) -> None:
        """Stop a statement that ran out of time, so it does not hold a thread and a lock."""
        for raw in running:
            stop = getattr(raw, "interrupt", None) or getattr(
                raw, "cancel", None
            )  # sqlite3, psycopg
            if stop is not None:
                with contextlib.suppress(Exception):
                    stop()

    def check(self, request: ConnectorRequest) -> dict[str, str]:
        return require_parameters(request, self._parameters)

    async def fetch(self, request: ConnectorRequest) -> Evidence:
        values = self.check(request)
        rows = self._inline.read(values) if self._inline is not None else None
        if rows is None:
            rows = await self._in_thread(values)
        if not rows:
            raise NotFound("the registry holds no record for this request")
        if len(rows) > 1:
            raise ServiceFailed(
                "registry returned more than one record for a single-record service"
            )
        row = rows[0]  # a dict of its own, made by the read (see InlineSqlite.read and _run)
        for column in self._json_columns:
            if isinstance(row.get(column), str | bytes):
                try:
                    row[column] = json.loads(row[column])
                except ValueError as exc:
                    raise ServiceFailed(f"registry column {column} is not valid JSON") from exc
        return self._field_map.map(row)

    async def _in_thread(self, values: dict[str, str]) -> list[dict[str, Any]]:
        try:
            loop = asyncio.get_running_loop()
            running: list[Any] = []
            pending = loop.run_in_executor(self._executor, self._run, values, running)
            return await asyncio.wait_for(pending, self._timeout)
        except TimeoutError as exc:
            self._cancel(running)
            raise ServiceTimeout(f"registry did not answer within {self._timeout:g} s") from exc
        except SQLAlchemyError as exc:
            failed = translate(exc, "the registry database")
            raise failed or ServiceFailed("registry query failed") from exc

    def _plan(self) -> None:
        # The declared query wrapped so that it returns no row: the database still resolves
        # every table and column it names, and nothing is read or locked for long. The text is
        # the operator's declared query; request values never reach it.
        probe = text(f"SELECT * FROM ({self._statement.text}) AS probe WHERE 1 = 0")  # noqa: S608
        with self._engine.connect() as connection:
            connection.execute(probe, dict.fromkeys(self._parameters, "")).fetchall()
            connection.rollback()

    async def probe(self) -> str:
        try:
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(loop.run_in_executor(self._executor, self._plan), self._timeout)
        except TimeoutError as exc:
            raise ServiceTimeout(f"the database did not answer within {self._timeout:g} s") from exc
        except SQLAlchemyError as exc:
            # The driver's own words (a missing table, a refused login) without the statement
            # or the URL that SQLAlchemy adds around them.
            said = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
            raise ServiceFailed(f"the database refused the query: {said}") from exc
        return "the database answered and accepts the query"

    async def close(self) -> None:
        if self._inline is not None:
            self._inline.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._engine.dispose()
