"""Repositories: map rows to domain entities, one module per aggregate, the mapping itself in
`mapping`. They flush but never commit."""

from storage.repositories.automation import (
    SqlEventRepository,
    SqlNoticeRepository,
    SqlRuleRepository,
    SqlTurnRepository,
)
from storage.repositories.contacts import SqlCompanyRepository, SqlContactRepository
from storage.repositories.history import SqlActivityRepository, SqlHistoryRepository
from storage.repositories.operations import SqlOperationRepository
from storage.repositories.people import (
    SqlAccessRequestRepository,
    SqlApiKeyRepository,
    SqlUserRepository,
)
from storage.repositories.preferences import (
    SqlDigestRepository,
    SqlFieldRepository,
    SqlViewRepository,
)
from storage.repositories.stages import SqlStageRepository

__all__ = [
    "SqlAccessRequestRepository",
    "SqlActivityRepository",
    "SqlApiKeyRepository",
    "SqlCompanyRepository",
    "SqlContactRepository",
    "SqlDigestRepository",
    "SqlEventRepository",
    "SqlFieldRepository",
    "SqlHistoryRepository",
    "SqlNoticeRepository",
    "SqlOperationRepository",
    "SqlRuleRepository",
    "SqlStageRepository",
    "SqlTurnRepository",
    "SqlUserRepository",
    "SqlViewRepository",
]
