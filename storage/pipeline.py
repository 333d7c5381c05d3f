"""Writes that run behind the code sending them, for units of work that write in bulk.

An import works out a batch's rows in Python and then writes them in a dozen statements. Sent
one at a time and awaited, each statement waits for the Python that builds it and the Python
waits for the statement: the database's thread (SQLite) or server and this thread take turns.
In a pipeline, a write is sent and the code goes on building the next one (or the next batch)
while the database runs it. Everything runs in the order it was sent: a step given to `behind`
(the next batch's reads) runs between the writes sent before it and those sent after it, and
any other statement on the connection (a read, a commit) first waits for everything sent. The
first failure is raised there, or by `Pipeline.drain`, and nothing sent after it runs."""

from __future__ import annotations

import asyncio
import contextlib
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

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._info = connection.info  # the database connection's, which outlives this
        self._last: asyncio.Future[Any] | None = None

    @property
    def pending(self) -> bool:
        """Whether anything was sent since the last drain (run or not: a failure among them is
        still to be raised)."""
        return self._last is not None

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

        async def write() -> None:
            try:
                if isinstance(statement, str):
                    await connection.exec_driver_sql(statement, parameters)
                else:
                    await connection.execute(statement, parameters)
            except IntegrityError:
                if refused is None:
                    raise
                raise refused() from None

        self.behind(write)
        await asyncio.sleep(0)  # lets the write reach the database before this task goes on

    def behind(self, step: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        """Run `step` (statements on this connection) after what was sent before it and before
        what is sent after it; its outcome, without waiting for it here."""
        before = self._last

        async def run() -> T:
            if before is not None:
                await before  # its failure is this step's: nothing after it runs
            _in_step.set(True)  # in this task's context only
            return await step()

        future = asyncio.ensure_future(run())
        self._last = future
        return future

    async def drain(self) -> None:
        """Wait for everything sent so far; raise the first failure among it."""
        last, self._last = self._last, None
        if last is not None:
            await last

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


def _after_pipeline(connection: Connection, *_: Any) -> None:
    if not _in_step.get():
        _drained(connection)


def _drained(connection: Connection) -> None:
    pipeline: Pipeline | None = connection.info.get(PIPELINE)
    if pipeline is not None and pipeline.pending:
        # SQLAlchemy runs this in a greenlet of its own, which can wait on the event loop.
        await_only(pipeline.drain())


async def start(session: AsyncSession) -> Pipeline:
    """A pipeline on the session's connection, until it is stopped."""
    connection = await session.connection()
    pipeline = Pipeline(connection)
    connection.info[PIPELINE] = pipeline
    return pipeline


async def of(session: AsyncSession) -> Pipeline | None:
    """The pipeline on the session's connection, if there is one."""
    return (await session.connection()).info.get(PIPELINE)
