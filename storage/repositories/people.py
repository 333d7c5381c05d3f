"""People: users, access requests and API keys."""

from __future__ import annotations

from copy import copy

from sqlalchemy import bindparam, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import TelegramIdTaken
from domain.model import AccessRequest, ApiKey, RequestStatus, User
from domain.text import fold
from storage.models import AccessRequestRow, ApiKeyRow, DigestSettingsRow, UserRow
from storage.repositories.mapping import (
    api_key_from_row,
    request_from_row,
    request_values,
    user_from_row,
    user_values,
)

# Built once: they run for every message and tap.
_USERS = select(UserRow).where(UserRow.id.in_(bindparam("ids", expanding=True)))
_ARRIVING = (
    select(UserRow, DigestSettingsRow.blocked_at)
    .outerjoin(DigestSettingsRow, DigestSettingsRow.user_id == UserRow.id)
    .where(UserRow.telegram_id == bindparam("telegram_id"))
)


class SqlUserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        # The people read so far in this unit of work, by id, until it writes one: a card names
        # its owner and the people of its timeline, and the check of who may see it reads the
        # owner too.
        self._read: dict[int, User] = {}

    async def get(self, user_id: int) -> User | None:
        return (await self.get_many({user_id})).get(user_id)

    async def by_telegram_id(self, telegram_id: int) -> User | None:
        row = await self._session.scalar(select(UserRow).where(UserRow.telegram_id == telegram_id))
        return self._remember(row) if row else None

    async def arriving(self, telegram_id: int) -> tuple[User | None, bool]:
        found = (await self._session.execute(_ARRIVING, {"telegram_id": telegram_id})).first()
        if found is None:
            return None, False
        row, blocked_at = found
        return self._remember(row), blocked_at is not None

    async def by_name(self, name: str) -> list[User]:
        rows = await self._session.scalars(
            select(UserRow).where(UserRow.name_key == fold(name)).order_by(UserRow.id)
        )
        return [self._remember(row) for row in rows]

    async def get_many(self, user_ids: set[int]) -> dict[int, User]:
        unread = user_ids - self._read.keys()
        if unread:
            for row in await self._session.scalars(_USERS, {"ids": list(unread)}):
                self._remember(row)
        # Copies: a use case changes a person before it saves them, or refuses to.
        return {i: copy(self._read[i]) for i in user_ids if i in self._read}

    async def list(self) -> list[User]:
        rows = await self._session.scalars(select(UserRow).order_by(UserRow.id))
        return [self._remember(row) for row in rows]

    async def add(self, user: User) -> User:
        row = UserRow(**user_values(user), created_at=user.created_at)
        # The unique index is the last word when two processes add the same person at once.
        try:
            async with self._session.begin_nested():
                self._session.add(row)  # in the savepoint: a refused row leaves with it
                await self._session.flush()
        except IntegrityError:
            if user.telegram_id is None:
                raise
            raise TelegramIdTaken(user.telegram_id) from None
        user.id = row.id
        return user

    async def update(self, user: User) -> None:
        self._read.clear()
        await self._session.execute(
            sql_update(UserRow).where(UserRow.id == user.id).values(**user_values(user))
        )

    def _remember(self, row: UserRow) -> User:
        user = user_from_row(row)
        self._read[row.id] = user
        return copy(user)


class SqlAccessRequestRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, request: AccessRequest) -> AccessRequest:
        row = AccessRequestRow(**request_values(request))
        self._session.add(row)
        await self._session.flush()
        request.id = row.id
        return request

    async def get(self, request_id: int) -> AccessRequest | None:
        row = await self._session.get(AccessRequestRow, request_id)
        return request_from_row(row) if row else None

    async def pending_for(self, telegram_id: int) -> AccessRequest | None:
        row = await self._session.scalar(
            select(AccessRequestRow).where(
                AccessRequestRow.telegram_id == telegram_id,
                AccessRequestRow.status == RequestStatus.PENDING.value,
            )
        )
        return request_from_row(row) if row else None

    async def pending(self) -> list[AccessRequest]:
        rows = await self._session.scalars(
            select(AccessRequestRow)
            .where(AccessRequestRow.status == RequestStatus.PENDING.value)
            .order_by(AccessRequestRow.requested_at)
        )
        return [request_from_row(row) for row in rows]

    async def update(self, request: AccessRequest) -> None:
        await self._session.execute(
            sql_update(AccessRequestRow)
            .where(AccessRequestRow.id == request.id)
            .values(**request_values(request))
        )


class SqlApiKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, key: ApiKey) -> ApiKey:
        row = ApiKeyRow(
            name=key.name,
            name_key=fold(key.name),
            prefix=key.prefix,
            secret_hash=key.secret_hash,
            created_at=key.created_at,
            created_by_id=key.created_by_id,
            revoked_at=key.revoked_at,
        )
        self._session.add(row)
        await self._session.flush()
        key.id = row.id
        return key

    async def active_named(self, name: str) -> ApiKey | None:
        row = await self._session.scalar(
            select(ApiKeyRow).where(
                ApiKeyRow.name_key == fold(name), ApiKeyRow.revoked_at.is_(None)
            )
        )
        return api_key_from_row(row) if row else None

    async def by_prefixes(self, prefixes: set[str]) -> list[ApiKey]:
        rows = await self._session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix.in_(prefixes)))
        return [api_key_from_row(row) for row in rows]

    async def list(self) -> list[ApiKey]:
        rows = await self._session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id.desc()))
        return [api_key_from_row(row) for row in rows]

    async def update(self, key: ApiKey) -> None:
        await self._session.execute(
            sql_update(ApiKeyRow).where(ApiKeyRow.id == key.id).values(revoked_at=key.revoked_at)
        )
