"""SQL connector: one declared, parameterised query per service, on any SQLAlchemy URL.

Request values only ever reach the database as bound parameters of the declared query text, so
no request can change the statement: injection is impossible by construction. The query must
return at most one row; none is ``NotFound``, more than one is a registry fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from connectors.base import ConnectorRequest, Evidence, map_fields, require_parameters
from exchange.db.engine import build_engine
from exchange.errors import NotFound, ServiceFailed, ServiceTimeout
from exchange.faults import translate


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
        self._fields = fields
        # Columns holding JSON text (lists such as a company's board members, built in SQL with
        # json_group_array): decoded before mapping. PostgreSQL json columns arrive decoded.
        self._json_columns = tuple(json_columns)
        self._timeout = timeout
        self._engine = engine if engine is not None else build_engine(url, pool_size=8)
        # Its own threads: a slow registry must not starve the event loop's default executor.
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sql-connector")

    def _run(self, values: dict[str, str], running: list[Any]) -> list[Mapping[str, Any]]:
        with self._engine.connect() as connection:
            running.append(connection.connection.dbapi_connection)
            result = connection.execute(self._statement, values).mappings().fetchmany(2)
            return [dict(row) for row in result]

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
        try:
            loop = asyncio.get_running_loop()
            running: list[Any] = []
            pending = loop.run_in_executor(self._executor, self._run, values, running)
            rows = await asyncio.wait_for(pending, self._timeout)
        except TimeoutError as exc:
            self._cancel(running)
            raise ServiceTimeout(f"registry did not answer within {self._timeout:g} s") from exc
        except SQLAlchemyError as exc:
            failed = translate(exc, "the registry database")
            raise failed or ServiceFailed("registry query failed") from exc
        if not rows:
            raise NotFound("the registry holds no record for this request")
        if len(rows) > 1:
            raise ServiceFailed(
                "registry returned more than one record for a single-record service"
            )
        row = dict(rows[0])
        for column in self._json_columns:
            if isinstance(row.get(column), str | bytes):
                try:
                    row[column] = json.loads(row[column])
                except ValueError as exc:
                    raise ServiceFailed(f"registry column {column} is not valid JSON") from exc
        return map_fields(row, self._fields)

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
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._engine.dispose()
