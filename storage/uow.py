"""The unit of work: one session, one transaction, committed only by the service."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.ports import (
    ActivityRepository,
    CompanyRepository,
    ContactRepository,
    HistoryRepository,
    OperationRepository,
    StageRepository,
    UserRepository,
)
from storage.repositories import (
    SqlActivityRepository,
    SqlCompanyRepository,
    SqlContactRepository,
    SqlHistoryRepository,
    SqlOperationRepository,
    SqlStageRepository,
    SqlUserRepository,
)


class SqlUnitOfWork:
    stages: StageRepository
    contacts: ContactRepository
    history: HistoryRepository
    users: UserRepository
    companies: CompanyRepository
    activities: ActivityRepository
    operations: OperationRepository

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def __aenter__(self) -> Self:
        self._session = self._sessions()
        session = self._session
        self.stages = SqlStageRepository(session)
        self.contacts = SqlContactRepository(session)
        self.history = SqlHistoryRepository(session)
        self.users = SqlUserRepository(session)
        self.companies = SqlCompanyRepository(session)
        self.activities = SqlActivityRepository(session)
        self.operations = SqlOperationRepository(session)
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
