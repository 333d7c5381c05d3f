"""Writes that run behind the code sending them, for units of work that write in bulk.

An import works out a batch's rows in Python and then writes them in a dozen statements. Sent
one at a time and awaited, each statement waits for the Python that builds it and the Python
waits for the statement: the database's thread (SQLite) or server and this thread take turns.
In a pipeline, a write is sent and the code goes on building the next one (or the next batch)
while the database runs it. Everything runs in the order it was sent: a step given to `behind`
(the next batch's reads) runs between the writes sent before it and those sent after it, and
any other statement on the connection (a read, a commit) first waits for everything sent. The
first failure is raised there, or by `Pipeline.drain`; what was sent after it may have run, in
a transaction that is then only ever rolled back."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.sql import Executable
from sqlalchemy.util import await_only

PIPELINE = "stagekeeper_pipeline"  # in the database connection's info: the pipeline on it
# Set while the pipeline runs a step: its statements are in their place already. (SQLAlchemy
# runs a statement in a greenlet that shares the context of the task awaiting it.)
_in_step: ContextVar[bool] = ContextVar("in_pipeline_step", default=False)

T = TypeVar("T")
Parameters = Sequence[Any] | Mapping[str, Any] | None


class Pipeline:
    """What was sent on one connection and not yet waited for."""

    def __init__(self, connection: AsyncConnection, driver: Any = None) -> None:
        self._connection = connection
        # SQLite's driver (aiosqlite) runs what it is given in order, in its thread: a write
        # given to it straight away runs as soon as the one before it ends, without waiting
        # for this thread to be free to hand it over (a batch's Python keeps it busy for
        # milliseconds at a time).
        self._driver = driver
        self._info = connection.info  # the database connection's, which outlives this
        self._last: asyncio.Future[Any] | None = None
        self._queued: asyncio.Future[Any] | None = None  # the last given to the driver as sent
        self._sent: list[asyncio.Future[Any]] = []  # since the last drain
        self._outside = 0  # writes run so far other than those sent or in steps
        self._remembered: dict[str, tuple[Any, int]] = {}

    def remember(self, key: str, value: Any) -> None:
        """Keep a value just read (the largest id of a table) for `remembered`."""
        self._remembered[key] = (value, self._outside)

    def remembered(self, key: str) -> Any | None:
        """The value kept under `key`, if nothing but reads and what was sent to this pipeline
        or run in its steps has run since: a value those cannot change (the largest id of a
        table that only inserts with ids given out beforehand write to) is still true then."""
        value, outside = self._remembered.get(key, (None, -1))
        return value if outside == self._outside else None

    @property
    def pending(self) -> bool:
        """Whether anything was sent since the last drain (run or not: a failure among them is
        still to be raised)."""
        return bool(self._sent)

    async def send(
        self,
        statement: str | Executable,
        parameters: Parameters = None,
        *,
        refused: Callable[[], Exception] | None = None,
    ) -> None:
        """Run `statement` after what was sent before it; `refused`, when given, is raised
        instead of an integrity error of the database (a unique index's). Returns as soon as
        the database could start on it."""
        connection = self._connection
        # SQLAlchemy's statements go through SQLAlchemy, which compiles each shape once.
        driver = self._driver if isinstance(statement, str) else None

        async def write() -> None:
            try:
                if driver is not None:
                    await driver.execute(statement, parameters)
                elif isinstance(statement, str):
                    await connection.exec_driver_sql(statement, parameters)
                else:
                    await connection.execute(statement, parameters)
            except (IntegrityError, sqlite3.IntegrityError):
                if refused is None:
                    raise
                raise refused() from None

        before = self._last
        if driver is not None and (before is None or before.done() or before is self._queued):
            # The driver gets it when the task starts, within the sleep below, after
            # whatever it got before.
            self._queued = self._add(asyncio.ensure_future(write()))
        else:
            self.behind(write)
        await asyncio.sleep(0)  # lets the write reach the database before this task goes on

    def behind(self, step: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run `step` (statements on this connection) after what was sent before it and before
        what is sent after it; its outcome, without waiting for it here."""
        before = self._last

        async def run() -> T:
            if before is not None:
                await before  # its failure is this step's
            _in_step.set(True)  # in this task's context only
            return await step()

        return self._add(asyncio.ensure_future(run()))

    def _add(self, future: asyncio.Future[T]) -> asyncio.Future[T]:
        self._last = future
        # Those done well are forgotten: a step's outcome (a batch's contacts) is its caller's.
        self._sent = [f for f in self._sent if not f.done() or f.cancelled() or f.exception()]
        self._sent.append(future)
        return future

    async def drain(self) -> None:
        """Wait for everything sent so far; raise the first failure among it. (What was sent
        after a failure may have run: a transaction with a failure is only ever rolled back.)"""
        sent, self._sent = self._sent, []
        self._last = self._queued = None
        outcomes = await asyncio.gather(*sent, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def stop(self) -> None:
        """Waits for what was sent, whatever became of it (after a failure elsewhere, the
        connection must be free before the transaction rolls back), and leaves the connection
        before it goes back to the pool."""
        # A step cancelled with the task awaiting it cancels the steps after it too.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self.drain()
        if self._info.get(PIPELINE) is self:
            del self._info[PIPELINE]


def watch(engine: AsyncEngine) -> None:
    """Makes every statement on the engine's connections, and every commit, wait for what a
    pipeline on the same connection was sent before it."""
    event.listen(engine.sync_engine, "before_cursor_execute", _after_pipeline)
    event.listen(engine.sync_engine, "commit", _drained)


def _after_pipeline(connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
    if _in_step.get():
        return
    pipeline: Pipeline | None = connection.info.get(PIPELINE)
    if pipeline is not None:
        if statement.lstrip()[:6].upper() != "SELECT":
            pipeline._outside += 1
        _drained(connection)


def _drained(connection: Connection) -> None:
    pipeline: Pipeline | None = connection.info.get(PIPELINE)
    if pipeline is not None and pipeline.pending:
        # SQLAlchemy runs this in a greenlet of its own, which can wait on the event loop.
        await_only(pipeline.drain())


async def start(session: AsyncSession) -> Pipeline:
    """A pipeline on the session's connection, until it is stopped."""
    connection = await session.connection()
    driver = None
    if connection.dialect.name == "sqlite":
        driver = (await connection.get_raw_connection()).driver_connection
    pipeline = Pipeline(connection, driver)
    connection.info[PIPELINE] = pipeline
    return pipeline


def of(connection: AsyncConnection) -> Pipeline | None:
    """The pipeline on the connection, if there is one."""
    return connection.info.get(PIPELINE)
