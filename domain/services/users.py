"""Use cases of people: admins from configuration, owners created before they use Telegram."""

from __future__ import annotations

from domain.access import require_role
from domain.errors import InvalidInput
from domain.model import Role, User
from domain.ports import UnitOfWorkFactory
from domain.text import clean_name


class UserService:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def ensure_admins(self, telegram_ids: list[int]) -> list[User]:
        """Make each configured Telegram id an active admin, creating users as needed."""
        admins = []
        async with self._uow() as uow:
            for telegram_id in telegram_ids:
                user = await uow.users.by_telegram_id(telegram_id)
                if user is None:
                    user = await uow.users.add(
                        User(None, f"Admin {telegram_id}", Role.ADMIN, telegram_id=telegram_id)
                    )
                elif user.role is not Role.ADMIN or not user.active:
                    user.role = Role.ADMIN
                    user.active = True
                    await uow.users.update(user)
                admins.append(user)
            await uow.commit()
        return admins

    async def add(
        self,
        actor: User,
        name: str,
        role: Role,
        *,
        team: str | None = None,
        telegram_id: int | None = None,
    ) -> User:
        require_role(actor, Role.ADMIN)
        name = clean_name(name)
        if not name or len(name) > 100:
            raise InvalidInput("A person needs a name of 1 to 100 characters.")
        async with self._uow() as uow:
            if telegram_id is not None and await uow.users.by_telegram_id(telegram_id):
                raise InvalidInput(f"Telegram id {telegram_id} already belongs to someone.")
            user = await uow.users.add(
                User(None, name, role, telegram_id=telegram_id, team=clean_name(team or "") or None)
            )
            await uow.commit()
        return user

    async def list(self) -> list[User]:
        async with self._uow() as uow:
            return await uow.users.list()
