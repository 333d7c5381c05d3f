"""Telling people about new leads in Telegram, once the events that made them are committed.

Paced to Telegram's limits: at most NOTIFY_RATE messages a second in all (one pacer with the
scheduled messages) and one a second per chat;
leads that pile up for one person meanwhile go out together as one message, so that 200 leads a
second still reach everyone within seconds. A notice stays pending in the database until its
message is sent, so that a restart sends what was left.

In a deployment of several processes only one sends: the one holding the scheduler lease
(bot/scheduler.py), which also looks for pending notices every second, since the others only
write theirs. So notices go out once, and the pace holds for the whole deployment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import I18n

from bot.container import Services
from bot.notifier import PER_CHAT_SECONDS, Pacer
from domain.errors import DomainError
from domain.model import Notice, User, utcnow
from handlers import leads
from handlers.i18n import language_of

log = logging.getLogger(__name__)

IN_FLIGHT = 8  # messages composed or sent at once: Telegram answers in ~100 ms, the pace is 40 ms
STOP_GRACE_SECONDS = 5.0


class LeadNotifier:
    def __init__(
        self,
        bot: Bot,
        services: Services,
        i18n: I18n,
        *,
        pacer: Pacer,
        per_chat: float = PER_CHAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sending: bool = True,
    ) -> None:
        """`sending=False`: the notifier of a process that may not hold the scheduler lease;
        it sends nothing until `take_over`."""
        self._may_send = sending
        self._bot = bot
        self._services = services
        self._i18n = i18n
        self._pacer = pacer
        self._per_chat = per_chat
        self._clock = clock
        self._waiting: dict[int, list[Notice]] = {}  # by user id, the longest waiting first
        self._known: set[int] = set()  # notice ids waiting or being sent
        self._busy: set[int] = set()  # users a message is being sent to
        self._chat_free_at: dict[int, float] = {}
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        self._sending: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    def submit(self, notices: list[Notice]) -> None:
        """Queue notices of committed events (never blocks the caller). Without the right to
        send they stay pending in the database, for the process that has it."""
        if not self._may_send:
            return
        for notice in notices:
            if notice.id is None or notice.id in self._known:
                continue
            self._known.add(notice.id)
            self._waiting.setdefault(notice.user_id, []).append(notice)
        if notices:
            self._wake.set()

    async def start(self) -> None:
        """Send what an earlier run left pending, and whatever is submitted from now on."""
        await self.look_for_pending()
        self._start_loop()

    async def look_for_pending(self) -> None:
        """Queue the notices pending in the database: an earlier run's, another process's."""
        if self._may_send:
            self.submit(await self._services.events.pending_notices())

    def take_over(self) -> None:
        """This process holds the scheduler lease: it sends, from the next look on."""
        self._may_send = True
        self._start_loop()

    def hand_over(self) -> None:
        """Another process sends now: forget what waits (it stays pending in the database);
        messages being sent finish."""
        self._may_send = False
        for notices in self._waiting.values():
            self._known.difference_update(n.id for n in notices if n.id is not None)
        self._waiting.clear()

    def _start_loop(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._run(), name="lead-notifier")

    async def stop(self) -> None:
        """Stop sending; messages being sent get a moment to finish. Unsent notices stay
        pending in the database."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._sending:
            _, late = await asyncio.wait(self._sending, timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    @property
    def idle(self) -> bool:
        return not self._waiting and not self._sending

    async def _run(self) -> None:
        while True:
            now = self._clock()
            user_id, wait = self._next_chat(now)
            if user_id is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            await self._slots.acquire()
            notices = self._waiting.pop(user_id)
            self._busy.add(user_id)
            task = asyncio.create_task(self._deliver(user_id, notices))
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _next_chat(self, now: float) -> tuple[int | None, float | None]:
        """The chat to write to now, else how long until one may be written to (None: nothing
        waits)."""
        soonest: float | None = None
        for user_id in self._waiting:
            if user_id in self._busy:
                continue
            free_at = self._chat_free_at.get(user_id, 0.0)
            if free_at <= now:
                return user_id, None
            soonest = free_at - now if soonest is None else min(soonest, free_at - now)
        return None, soonest

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.discard(task)
        self._slots.release()
        self._wake.set()

    async def _deliver(self, user_id: int, notices: list[Notice]) -> None:
        ids = [notice.id for notice in notices if notice.id is not None]
        try:
            await self._send(user_id, notices)
            await self._services.events.notices_sent(ids)
        except Exception:
            # Left pending in the database: the next start sends them.
            log.exception("could not tell user #%s about %d new lead(s)", user_id, len(ids))
        finally:
            self._known.difference_update(ids)
            self._busy.discard(user_id)
            self._chat_free_at[user_id] = self._clock() + self._per_chat

    async def _send(self, user_id: int, notices: list[Notice]) -> None:
        try:
            person = await self._services.users.get(user_id)
        except DomainError:
            return
        if person.telegram_id is None or not person.active:
            return  # nobody to tell: the lead waits in their /my
        language = language_of(person, None, self._i18n.default_locale)
        with self._i18n.context(), self._i18n.use_locale(language):
            message = await self._message(person, notices, language)
        if message is None:
            return
        text, keyboard = message
        await self._pacer.wait(person.telegram_id)
        try:
            await self._bot.send_message(person.telegram_id, text, reply_markup=keyboard)
        except (TelegramForbiddenError, TelegramBadRequest) as error:
            # They blocked the bot or never started it: sending again would not help.
            log.warning("cannot tell %s about new leads: %s", person.name, error.message)

    async def _message(
        self, person: User, notices: list[Notice], language: str
    ) -> tuple[str, InlineKeyboardMarkup] | None:
        contacts = self._services.contacts
        if len(notices) == 1:
            try:
                card = await contacts.card(person, notices[0].contact_id)
            except DomainError:  # deleted, or given to someone else meanwhile
                return None
            stages = await self._services.stages.ordered()
            people = await contacts.people_named_in(card)
            zone = self._services.settings.zone
            return leads.new_lead(
                card, people, stages, person, zone=zone, now=utcnow(), language=language
            )
        shown = []
        for notice in notices[: leads.LIST_LIMIT]:  # only those the message shows are read
            with contextlib.suppress(DomainError):
                shown.append(await contacts.get(person, notice.contact_id))
        return leads.new_leads(len(notices), shown) if shown else None
