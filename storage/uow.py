"""The unit of work: one session, one transaction, committed only by the service."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.ports import (
    AccessRequestRepository,
    ActivityRepository,
    CompanyRepository,
    ContactRepository,
    HistoryRepository,
    OperationRepository,
    ReportRepository,
    StageRepository,
    UserRepository,
    ViewRepository,
)
from storage.reports import SqlReportRepository
from storage.repositories import (
    SqlAccessRequestRepository,
    SqlActivityRepository,
    SqlCompanyRepository,
    SqlContactRepository,
    SqlHistoryRepository,
    SqlOperationRepository,
    SqlStageRepository,
    SqlUserRepository,
    SqlViewRepository,
)


class _Repositories:
    stages: StageRepository
    contacts: ContactRepository
    history: HistoryRepository
    users: UserRepository
    companies: CompanyRepository
    activities: ActivityRepository
    operations: OperationRepository
    access_requests: AccessRequestRepository
    views: ViewRepository
    reports: ReportRepository

    def _bind(self, session: AsyncSession) -> None:
        self.stages = SqlStageRepository(session)
        self.contacts = SqlContactRepository(session)
        self.history = SqlHistoryRepository(session)
        self.users = SqlUserRepository(session)
        self.companies = SqlCompanyRepository(session)
        self.activities = SqlActivityRepository(session)
        self.operations = SqlOperationRepository(session)
        self.access_requests = SqlAccessRequestRepository(session)
        self.views = SqlViewRepository(session)
        self.reports = SqlReportRepository(session)


class SqlUnitOfWork(_Repositories):
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        self._bind(self._session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Whatever was not committed is rolled back: a refused operation changes nothing.
        await self._session.rollback()
        await self._session.close()

    async def commit(self) -> None:
        await self._session.commit()

    async def rollback(self) -> None:
        await self._session.rollback()


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

    async def commit(self) -> None:
        await self._session.flush()

    async def rollback(self) -> None:
        raise RuntimeError("a refused use case aborts the caller's whole transaction")
