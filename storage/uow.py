"""The unit of work: one session, one transaction, committed only by the service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.ports import (
    AccessRequestRepository,
    ActivityRepository,
    ApiKeyRepository,
    CompanyRepository,
    Conflict,
    ContactRepository,
    DigestRepository,
    EventRepository,
    FieldRepository,
    HistoryRepository,
    NoticeRepository,
    OperationRepository,
    ReportRepository,
    RuleRepository,
    StageRepository,
    TurnRepository,
    UserRepository,
    ViewRepository,
)
from storage import ledger, pipeline
from storage.db import READ_ONLY, UNCHECKED_REFERENCES, unavailable
from storage.report_projection import ReportProjection
from storage.report_queries import SqlReportRepository
from storage.repositories import (
    SqlAccessRequestRepository,
    SqlActivityRepository,
    SqlApiKeyRepository,
    SqlCompanyRepository,
    SqlContactRepository,
    SqlDigestRepository,
    SqlEventRepository,
    SqlFieldRepository,
    SqlHistoryRepository,
    SqlNoticeRepository,
    SqlOperationRepository,
    SqlRuleRepository,
    SqlStageRepository,
    SqlTurnRepository,
    SqlUserRepository,
    SqlViewRepository,
)

T = TypeVar("T")


class _Repositories:
    _projection: ReportProjection
    stages: StageRepository
    contacts: ContactRepository
    history: HistoryRepository
    users: UserRepository
    companies: CompanyRepository
    activities: ActivityRepository
    operations: OperationRepository
    access_requests: AccessRequestRepository
    views: ViewRepository
    fields: FieldRepository
    digests: DigestRepository
    api_keys: ApiKeyRepository
    events: EventRepository
    rules: RuleRepository
    turns: TurnRepository
    notices: NoticeRepository
    reports: ReportRepository

    def _bind(self, session: AsyncSession) -> None:
        # One projection for the unit of work: the repositories that change reported data tell
        # it what they touched, and the commit brings the report rows in step once.
        self._projection = projection = ReportProjection(session)
        self.stages = SqlStageRepository(session, projection)
        self.contacts = SqlContactRepository(session, projection)
        self.history = SqlHistoryRepository(session, projection)
        self.users = SqlUserRepository(session)
        self.companies = SqlCompanyRepository(session)
        self.activities = SqlActivityRepository(session, projection)
        self.operations = SqlOperationRepository(session, projection)
        self.access_requests = SqlAccessRequestRepository(session)
        self.views = SqlViewRepository(session)
        self.fields = SqlFieldRepository(session)
        self.digests = SqlDigestRepository(session)
        self.api_keys = SqlApiKeyRepository(session)
        self.events = SqlEventRepository(session)
        self.rules = SqlRuleRepository(session)
        self.turns = SqlTurnRepository(session)
        self.notices = SqlNoticeRepository(session)
        self.reports = SqlReportRepository(session)


# PostgreSQL's codes for a transaction that lost to a concurrent one: a deadlock, and a
# serialization failure.
COLLISIONS = {"40P01", "40001"}


def _collided(error: DBAPIError) -> bool:
    return getattr(error.orig, "sqlstate", None) in COLLISIONS


class SqlUnitOfWork(_Repositories):
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        bulk: bool = False,
        read_only: bool = False,
    ) -> None:
        self._sessions = sessions
        self._bulk = bulk
        self._read_only = read_only
        self._pipeline: pipeline.Pipeline | None = None

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        self._bind(self._session)
        try:
            if self._read_only:
                # On SQLite its transaction begins deferred (storage.db): no wait for the write
                # lock.
                await self._session.connection(execution_options={READ_ONLY: True})
            if self._bulk:
                # Begins the transaction now, telling the engine (storage.db) what kind it is.
                await self._session.connection(execution_options={UNCHECKED_REFERENCES: True})
                self._pipeline = await pipeline.start(self._session)
        except BaseException as error:
            await self.__aexit__(type(error), error, error.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop_pipeline()
        # Whatever was not committed is rolled back: a refused operation changes nothing.
        await self._session.rollback()
        self._projection.forget()
        await self._session.close()
        if isinstance(exc, DBAPIError) and _collided(exc):
            raise Conflict(str(exc.orig)) from exc
        # A busy, full or failing database, in the domain's terms: the callers (the command
        # line, the chat, the HTTP API) tell the person in one line, and nothing was changed.
        trouble = unavailable(exc) if exc is not None else None
        if trouble is not None:
            raise trouble from exc

    async def flush(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.drain()

    def behind(self, step: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        if self._pipeline is not None:
            return self._pipeline.behind(step)
        return asyncio.ensure_future(step())

    async def commit(self) -> bool:
        if self._read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        await self._projection.bring_in_step()
        await self.flush()
        delivery = ledger.current()
        if delivery is not None and not await ledger.record_step(self._session, delivery):
            # A redelivered update whose effect is already stored: answer, change nothing.
            await self.rollback()
            return False
        await self._session.commit()
        self._projection.forget()
        await self._stop_pipeline()  # the connection goes back to the pool
        return True

    async def rollback(self) -> None:
        await self._stop_pipeline()
        self._projection.forget()
        await self._session.rollback()

    async def _stop_pipeline(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.stop()
            self._pipeline = None


class SharedSessionUnitOfWork(_Repositories):
    """A use case inside a larger transaction that the caller owns and commits (e.g. loading the
    demo): its commit only flushes, and a refusal aborts the whole transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._bind(session)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def flush(self) -> None:
        return None

    def behind(self, step: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        return asyncio.ensure_future(step())

    async def commit(self) -> bool:
        await self._projection.bring_in_step()
        await self._session.flush()
        return True

    async def rollback(self) -> None:
        raise RuntimeError("a refused use case aborts the caller's whole transaction")
