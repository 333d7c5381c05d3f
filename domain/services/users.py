"""Use cases of people: admins from configuration, access requested and granted in chat,
roles, teams and languages, and owners created before they ever open Telegram."""

from __future__ import annotations

from dataclasses import dataclass

from domain.access import require_role
from domain.errors import AccessDenied, InvalidInput, NotFound, TelegramIdTaken, UserNotFound
from domain.model import AccessRequest, RequestStatus, Role, User, utcnow
from domain.ports import Clock, UnitOfWork, UnitOfWorkFactory
from domain.text import clean_name, fold

NAME_MAX = 100
TEAM_MAX = 64
LANGUAGES = ("en", "vi", "zh")


@dataclass(frozen=True, slots=True)
class AccessDecision:
    request: AccessRequest
    user: User | None  # the new (or newly linked) user when approved


@dataclass(frozen=True, slots=True)
class Arrival:
    """The person behind an update, as the bot meets them."""

    user: User | None  # None for a stranger
    paused: bool  # the bot's messages to them are paused, since a send was refused


class UserService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock = utcnow) -> None:
        self._uow = uow
        self._clock = clock

    async def ensure_admins(self, telegram_ids: list[int]) -> list[User]:
        """Make each configured Telegram id an active admin, creating users as needed."""
        try:
            return await self._ensure_admins(telegram_ids)
        except TelegramIdTaken:  # by another process starting at the same time: look again
            return await self._ensure_admins(telegram_ids)

    async def _ensure_admins(self, telegram_ids: list[int]) -> list[User]:
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
        name = _person_name(name)
        async with self._uow() as uow:
            if telegram_id is not None and await uow.users.by_telegram_id(telegram_id):
                raise TelegramIdTaken(telegram_id)
            user = await uow.users.add(
                User(None, name, role, telegram_id=telegram_id, team=_team(team))
            )
            await uow.commit()
        return user

    async def everyone(self) -> list[User]:
        async with self._uow(read_only=True) as uow:
            return await uow.users.list()

    async def arriving(self, telegram_id: int) -> Arrival:
        """Who is behind an update, and whether their messages were paused: one read, made for
        every message and tap."""
        async with self._uow(read_only=True) as uow:
            return Arrival(*await uow.users.arriving(telegram_id))

    async def by_telegram_id(self, telegram_id: int) -> User | None:
        async with self._uow(read_only=True) as uow:
            return await uow.users.by_telegram_id(telegram_id)

    async def get(self, user_id: int) -> User:
        async with self._uow(read_only=True) as uow:
            user = await uow.users.get(user_id)
        if user is None:
            raise UserNotFound(f"#{user_id}")
        return user

    async def teams(self) -> list[str]:
        async with self._uow(read_only=True) as uow:
            users = await uow.users.list()
        return sorted({u.team for u in users if u.team}, key=fold)

    async def request_access(
        self, telegram_id: int, name: str, username: str | None, language: str | None
    ) -> tuple[AccessRequest, bool]:
        """Record that someone asks to be let in. Returns the request and whether it is new
        (a second /start while waiting does not notify the admins again)."""
        async with self._uow() as uow:
            user = await uow.users.by_telegram_id(telegram_id)
            if user is not None:
                if not user.active:
                    raise AccessDenied("Your access was switched off; ask an admin.")
                raise InvalidInput("You already have access.")
            existing = await uow.access_requests.pending_for(telegram_id)
            if existing is not None:
                return existing, False
            request = await uow.access_requests.add(
                AccessRequest(
                    None,
                    telegram_id,
                    _person_name(name or str(telegram_id)),
                    username=username,
                    language=language,
                    requested_at=self._clock(),
                )
            )
            await uow.commit()
        return request, True

    async def pending_requests(self, actor: User) -> list[AccessRequest]:
        require_role(actor, Role.ADMIN)
        async with self._uow(read_only=True) as uow:
            return await uow.access_requests.pending()

    async def decide(
        self,
        actor: User,
        request_id: int,
        *,
        approve: bool,
        role: Role = Role.AGENT,
        team: str | None = None,
    ) -> AccessDecision:
        """Approve (as agent or manager, in a team) or reject a pending request. An owner who
        already exists without Telegram under the same name is linked instead of duplicated."""
        require_role(actor, Role.ADMIN)
        if approve and role is Role.ADMIN:
            raise InvalidInput(
                "Admins come from the ADMIN_IDS setting; approve as agent or manager."
            )
        async with self._uow() as uow:
            request = await uow.access_requests.get(request_id)
            if request is None:
                raise NotFound("That access request no longer exists.")
            if request.status is not RequestStatus.PENDING:
                decider = await _name(uow, request.decided_by_id)
                raise InvalidInput(f"{decider} already {request.status.value} this request.")
            request.status = RequestStatus.APPROVED if approve else RequestStatus.REJECTED
            request.decided_by_id = actor.id
            request.decided_at = self._clock()
            await uow.access_requests.update(request)
            user = None
            if approve:
                user = await _link_or_create(uow, request, role, _team(team))
            await uow.commit()
        return AccessDecision(request, user)

    async def set_role(self, actor: User, user_id: int, role: Role) -> User:
        return await self._change(actor, user_id, role=role)

    async def set_team(self, actor: User, user_id: int, team: str | None) -> User:
        return await self._change(actor, user_id, team=_team(team), change_team=True)

    async def set_active(self, actor: User, user_id: int, active: bool) -> User:
        return await self._change(actor, user_id, active=active)

    async def set_language(self, user: User, language: str) -> User:
        if language not in LANGUAGES:
            raise InvalidInput(f"Choose one of {', '.join(LANGUAGES)}.")
        async with self._uow() as uow:
            assert user.id is not None
            stored = await uow.users.get(user.id)
            if stored is None:
                raise UserNotFound(f"#{user.id}")
            stored.language = language
            await uow.users.update(stored)
            await uow.commit()
        return stored

    async def _change(
        self,
        actor: User,
        user_id: int,
        *,
        role: Role | None = None,
        team: str | None = None,
        change_team: bool = False,
        active: bool | None = None,
    ) -> User:
        require_role(actor, Role.ADMIN)
        async with self._uow() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise UserNotFound(f"#{user_id}")
            if user.id == actor.id and (active is False or role not in (None, Role.ADMIN)):
                raise InvalidInput("You cannot demote or switch off yourself.")
            if role is not None:
                user.role = role
            if change_team:
                user.team = team
            if active is not None:
                user.active = active
            await uow.users.update(user)
            await uow.commit()
        return user


async def _link_or_create(
    uow: UnitOfWork, request: AccessRequest, role: Role, team: str | None
) -> User:
    unlinked = [u for u in await uow.users.by_name(request.name) if u.telegram_id is None]
    if len(unlinked) == 1:
        user = unlinked[0]
        user.telegram_id = request.telegram_id
        user.role = role
        user.team = team or user.team
        user.active = True
        user.language = request.language
        await uow.users.update(user)
        return user
    return await uow.users.add(
        User(
            None,
            request.name,
            role,
            telegram_id=request.telegram_id,
            team=team,
            language=request.language,
        )
    )


async def _name(uow: UnitOfWork, user_id: int | None) -> str:
    user = await uow.users.get(user_id) if user_id else None
    return user.name if user else "Someone"


def _person_name(raw: str) -> str:
    name = clean_name(raw)
    if not name or len(name) > NAME_MAX:
        raise InvalidInput(f"A person needs a name of 1 to {NAME_MAX} characters.")
    return name


def _team(raw: str | None) -> str | None:
    team = clean_name(raw or "")
    if len(team) > TEAM_MAX:
        raise InvalidInput(f"A team name has at most {TEAM_MAX} characters.")
    return team or None
