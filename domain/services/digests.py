"""Use cases of the morning messages and reminders: who is due what, exactly once.

Every person chooses, with /digest, the time and time zone of their morning message and, for
managers and admins, its sections. A message is due when its time has passed on the person's
local day and it was not claimed for that day yet, so a morning missed while the bot was down is
sent on start, once, as long as it is still the same day there. Claiming comes first and is
committed before sending: a crash between the two loses one message rather than sending one
twice."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.access import Scope
from domain.errors import InvalidInput
from domain.model import (
    Activity,
    Category,
    Contact,
    DigestSection,
    DigestSettings,
    Role,
    User,
    utcnow,
)
from domain.ports import Clock, ContactFilter, UnitOfWorkFactory
from domain.reports import DEFAULT_DAYS, Funnel, LeaderRow, Period, Summary
from domain.services.contacts import ContactDetails, with_names
from domain.services.reports import ReportService
from domain.stages import Pipeline

DEFAULT_IDLE_DAYS = 7
DIGEST = "digest"  # a manager's or admin's morning digest
IDLE = "idle"  # an agent's morning list of idle leads
TOP_AGENTS = 3


@dataclass(frozen=True, slots=True)
class Due:
    """A morning message to send: to whom, for which of their local days, which kind."""

    user: User
    settings: DigestSettings
    day: date
    kind: str

    @property
    def user_id(self) -> int:
        assert self.user.id is not None
        return self.user.id


@dataclass(frozen=True, slots=True)
class MorningDigest:
    """A manager's or admin's morning digest: the figures of their scope's yesterday (their
    local day before the digest's), and what the sections they chose need."""

    sections: frozenset[DigestSection]
    summary: Summary
    top: tuple[LeaderRow, ...]  # the best agents of yesterday, at most TOP_AGENTS
    idle: list[ContactDetails]  # idle leads, the longest idle first, up to the limit asked
    funnel: Funnel | None  # the 30 days up to yesterday, for the chart; None when not chosen

    @property
    def day(self) -> date:
        return self.summary.period.last


@dataclass(frozen=True, slots=True)
class TaskReminder:
    task: Activity
    contact: Contact
    owner: User


class DigestService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        zone: ZoneInfo,
        *,
        default_idle_days: int = DEFAULT_IDLE_DAYS,
        clock: Clock = utcnow,
        reports: ReportService | None = None,
    ) -> None:
        self._uow = uow
        self._zone = zone
        self._default_idle_days = default_idle_days
        self._clock = clock
        self._reports = reports or ReportService(uow, zone, clock)

    def defaults(self, user_id: int) -> DigestSettings:
        return DigestSettings(user_id, timezone=self._zone.key)

    async def settings_of(self, actor: User) -> DigestSettings:
        assert actor.id is not None
        async with self._uow(read_only=True) as uow:
            stored = (await uow.digests.settings()).get(actor.id)
        return stored or self.defaults(actor.id)

    async def update(
        self,
        actor: User,
        *,
        enabled: bool | None = None,
        send_at: str | None = None,
        timezone: str | None = None,
        toggle: DigestSection | None = None,
    ) -> DigestSettings:
        """Change one's own settings. Switching on (or changing anything) after the bot was
        blocked starts the messages again."""
        settings = replace(await self.settings_of(actor), blocked_at=None)
        if enabled is not None:
            settings.enabled = enabled
        if send_at is not None:
            settings.send_at = parse_time(send_at)
        if timezone is not None:
            settings.timezone = parse_zone(timezone).key
        if toggle is not None:
            settings.sections = settings.sections ^ {toggle}
        async with self._uow() as uow:
            await uow.digests.save(settings)
            await uow.commit()
        return settings

    async def due(
        self, now: datetime | None = None, *, whatever_the_time: bool = False
    ) -> list[Due]:
        """The morning messages whose time has come and that nobody claimed yet; with
        `whatever_the_time`, also those due later today (an operator sending them at once)."""
        now = now or self._clock()
        async with self._uow(read_only=True) as uow:
            people = [u for u in await uow.users.list() if u.active and u.telegram_id]
            stored = await uow.digests.settings()
            claimed: dict[tuple[date, str], set[int]] = {}
            found = []
            for person in people:
                assert person.id is not None
                settings = stored.get(person.id) or self.defaults(person.id)
                if not settings.enabled or settings.blocked_at is not None:
                    continue
                local = now.astimezone(ZoneInfo(settings.timezone))
                if local.time() < settings.send_at and not whatever_the_time:
                    continue
                kind = IDLE if person.role is Role.AGENT else DIGEST
                key = (local.date(), kind)
                if key not in claimed:
                    claimed[key] = await uow.digests.claimed(*key)
                if person.id not in claimed[key]:
                    found.append(Due(person, settings, local.date(), kind))
        return found

    async def claim(self, due: Due) -> bool:
        """Take a due message for sending; False if it is taken already."""
        async with self._uow() as uow:
            taken = await uow.digests.claim(due.user_id, due.day, due.kind, self._clock())
            await uow.commit()
        return taken

    async def unclaim(self, due: Due) -> None:
        """Give back a claimed message that was not sent, for a later run to send."""
        async with self._uow() as uow:
            await uow.digests.unclaim(due.user_id, due.day, due.kind)
            await uow.commit()

    async def sent(self, due: Due) -> None:
        async with self._uow() as uow:
            await uow.digests.mark_sent(due.user_id, due.day, due.kind, self._clock())
            await uow.commit()

    async def blocked(self, user_id: int) -> None:
        """The person blocked the bot: stop their messages until they write to it again."""
        async with self._uow() as uow:
            settings = (await uow.digests.settings()).get(user_id) or self.defaults(user_id)
            settings.blocked_at = self._clock()
            await uow.digests.save(settings)
            await uow.commit()

    async def resume(self, actor: User) -> bool:
        """The person wrote to the bot, so it can reach them again: messages paused because it
        could not start again. True when they were paused."""
        assert actor.id is not None
        async with self._uow() as uow:
            resumed = await uow.digests.unpause(actor.id)
            if resumed:
                await uow.commit()
        return resumed

    async def idle_leads(self, actor: User, *, limit: int = 30) -> list[ContactDetails]:
        """Open leads of the actor's scope nobody touched for longer than their stage allows
        (the stage's own threshold, else the default), and with no task due ahead; the longest
        idle first."""
        now = self._clock()
        async with self._uow(read_only=True) as uow:
            pipeline = Pipeline(await uow.stages.list())
            cutoffs = tuple(
                (stage.id, now - timedelta(days=stage.idle_days or self._default_idle_days))
                for stage in pipeline.in_category(Category.OPEN)
                if stage.id is not None
            )
            if not cutoffs:
                return []
            found = await uow.contacts.listing(
                ContactFilter(idle_by_stage=cutoffs, without_task_after=now),
                Scope.of(actor),
                limit=limit,
            )
            return await with_names(uow, found)

    async def digest(self, due: Due, *, idle_limit: int) -> MorningDigest:
        """The digest of `due`: the day before `due.day`, in the person's digest time zone,
        within their scope. Only what the chosen sections need is read, but the figures always
        are: they tell whether the day was quiet."""
        sections = due.settings.sections
        reports = self._reports.in_zone(ZoneInfo(due.settings.timezone))
        yesterday = due.day - timedelta(days=1)
        summary = await reports.summary(due.user, Period(yesterday, yesterday))
        top: tuple[LeaderRow, ...] = ()
        if DigestSection.TOP in sections and not summary.quiet:
            board = await reports.leaderboard(due.user, summary.period)
            top = tuple(row for row in board.rows if row.owner_id is not None)[:TOP_AGENTS]
        idle = (
            await self.idle_leads(due.user, limit=idle_limit)
            if DigestSection.IDLE in sections
            else []
        )
        funnel = None
        if DigestSection.CHART in sections and not summary.quiet:
            month = Period(yesterday - timedelta(days=DEFAULT_DAYS - 1), yesterday)
            funnel = await reports.funnel(due.user, month)
        return MorningDigest(frozenset(sections), summary, top, idle, funnel)

    async def due_tasks(self, *, limit: int = 200) -> list[TaskReminder]:
        """Tasks that fell due, each claimed for its one reminder (to the contact's owner, or
        whoever logged it when the contact has no owner)."""
        async with self._uow() as uow:
            tasks = await uow.activities.claim_due_tasks(self._clock(), limit)
            found = [(task, await uow.contacts.get(task.contact_id)) for task in tasks]
            pairs = [(task, contact) for task, contact in found if contact is not None]
            owners = await uow.users.get_many(
                {owner_id for task, c in pairs if (owner_id := c.owner_id or task.by_user_id)}
            )
            reminders = []
            for task, contact in pairs:
                owner = owners.get(contact.owner_id or task.by_user_id or 0)
                if owner is not None and owner.active and owner.telegram_id:
                    reminders.append(TaskReminder(task, contact, owner))
            await uow.commit()
        return reminders


def parse_time(text: str) -> time:
    """`8`, `8:30`, `08:30`, `8h30` → a time of day."""
    cleaned = text.strip().lower().replace("h", ":").replace(".", ":")
    hour, _, minute = cleaned.partition(":")
    try:
        return time(int(hour), int(minute or 0))
    except ValueError:
        raise InvalidInput(f"{text!r} is not a time of day; write it as 08:00.") from None


def parse_zone(text: str) -> ZoneInfo:
    try:
        return ZoneInfo(text.strip())
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{text!r} is not a time zone; write it as Asia/Ho_Chi_Minh.") from None
