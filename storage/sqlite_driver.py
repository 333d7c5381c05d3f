"""aiosqlite with one hop to SQLite's thread per statement instead of four.

aiosqlite runs each call on its connection's thread: SQLAlchemy creates a cursor, executes,
fetches and closes it, four round trips between the event loop and that thread for every
statement, each costing more CPU than a small indexed read does in SQLite. Here a statement is
created, executed, fetched and closed in one call, and its first rows come back with it; a large
result keeps its cursor open and fetches the rest on request, so nothing reads more rows into
memory than SQLAlchemy asks for. History and figures: docs/performance.md."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.engine import make_url

# Rows fetched with a statement; a larger result fetches the rest in further hops.
FIRST_ROWS = 2_000


class OneHopConnection(aiosqlite.Connection):
    def cursor(self) -> OneHopCursor:  # type: ignore[override]
        # SQLAlchemy enters it with `await cursor.__aenter__()`: no hop.
        return OneHopCursor(self)

    # SQLAlchemy ends a transaction and, returning the connection to its pool, ends it again;
    # sqlite3 then does nothing, on SQLite's thread. Whether a transaction is open can be read
    # from here (SQLite's autocommit flag), saving that hop.
    async def commit(self) -> None:
        if self._conn.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        if self._conn.in_transaction:
            await super().rollback()


class OneHopCursor:
    """What SQLAlchemy's aiosqlite adapter uses of `aiosqlite.Cursor`."""

    arraysize = 1

    def __init__(self, connection: OneHopConnection) -> None:
        self._connection = connection
        self._open: sqlite3.Cursor | None = None  # a large result's cursor, still fetching
        self._rows: list[Any] = []
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None

    async def __aenter__(self) -> OneHopCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _hop(self, function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        return self._connection._execute(function, *args)  # type: ignore[no-untyped-call]

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> OneHopCursor:
        await self._release()
        self._take(await self._hop(self._run, sql, () if parameters is None else parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> OneHopCursor:
        await self._release()
        self._take(await self._hop(self._run_many, sql, parameters))
        return self

    def _run(self, sql: str, parameters: Sequence[Any]) -> tuple[Any, ...]:
        return self._finish(self._connection._conn.execute(sql, parameters))

    def _run_many(self, sql: str, parameters: Iterable[Sequence[Any]]) -> tuple[Any, ...]:
        return self._finish(self._connection._conn.executemany(sql, parameters))

    @staticmethod
    def _finish(cursor: sqlite3.Cursor) -> tuple[Any, ...]:
        """On SQLite's thread: the statement's outcome and its first rows."""
        rows = cursor.fetchmany(FIRST_ROWS) if cursor.description else []
        done = len(rows) < FIRST_ROWS
        if done:
            cursor.close()
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows, None if done else cursor

    def _take(self, outcome: tuple[Any, ...]) -> None:
        self.description, self.rowcount, self.lastrowid, self._rows, self._open = outcome

    async def fetchone(self) -> Any:
        rows = await self.fetchmany(1)
        return rows[0] if rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        size = size or self.arraysize
        if len(self._rows) < size and self._open is not None:
            more = await self._hop(self._open.fetchmany, size - len(self._rows))
            self._rows.extend(more)
            if not more:
                await self._release()
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    async def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        if self._open is not None:
            rows.extend(await self._hop(self._open.fetchall))
            await self._release()
        return rows

    async def close(self) -> None:
        self._rows = []
        await self._release()

    async def _release(self) -> None:
        if self._open is not None:
            cursor, self._open = self._open, None
            await self._hop(cursor.close)


def connector(url: str) -> Callable[[], Awaitable[OneHopConnection]]:
    """For `create_async_engine(async_creator=…)`: connects as SQLAlchemy's aiosqlite dialect
    would to the database of `url`."""
    parsed = make_url(url)
    args, kwargs = parsed.get_dialect()().create_connect_args(parsed)

    async def connect() -> OneHopConnection:
        connection = OneHopConnection(partial(sqlite3.connect, *args, **kwargs), 64)
        connection._thread.daemon = True  # as SQLAlchemy does: an unclosed one ends with us
        await connection
        return connection

    return connect
