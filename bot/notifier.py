"""Messages the bot sends on its own: the morning digest and idle-lead list, and task
reminders. Paced under Telegram's limit of about 30 messages a second (429 answers are retried
after their `retry_after` by the session's middleware); a person who blocked the bot has their
messages paused instead of failing the run, until they write to the bot again."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import BufferedInputFile, TelegramObject, Update
from aiogram.utils.i18n import I18n

from bot.container import Services
from domain.model import User
from domain.services.digests import DigestService, Due
from handlers import digest as render
from handlers.i18n import language_of

log = logging.getLogger(__name__)

MESSAGES_PER_SECOND = 25
PER_CHAT_SECONDS = 1.0  # Telegram's limit for one chat
# Telegram's 403 to a bot writing first to someone who never wrote to it.
NOT_STARTED = "can't initiate conversation"


class Pacer:
    """At most `rate` messages a second across every caller of this pacer, and `per_chat`
    seconds at least between two messages to one chat, whichever path sends them (new-lead
    notices, morning messages and their charts, reminders)."""

    def __init__(
        self, rate: float = MESSAGES_PER_SECOND, per_chat: float = PER_CHAT_SECONDS
    ) -> None:
        self._gap = 1 / rate
        self._per_chat = per_chat
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._chats: dict[int, asyncio.Lock] = {}
        self._chat_free_at: dict[int, float] = {}

    async def wait(self, chat_id: int | None = None) -> None:
        if chat_id is None:
            await self._turn()
            return
        chat = self._chats.setdefault(chat_id, asyncio.Lock())
        async with chat:  # one message to a chat at a time, each after the one before
            free_in = self._chat_free_at.get(chat_id, 0.0) - time.monotonic()
            if free_in > 0:
                await asyncio.sleep(free_in)
            self._chat_free_at[chat_id] = await self._turn() + self._per_chat
        if not chat.locked() and len(self._chats) > 1000:
            self._forget_idle_chats()

    async def _turn(self) -> float:
        """Wait for the next free moment overall; returns it."""
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            at = max(now, self._next)
            self._next = at + self._gap
        return at

    def _forget_idle_chats(self) -> None:
        now = time.monotonic()
        for chat_id, lock in list(self._chats.items()):
            if not lock.locked() and self._chat_free_at.get(chat_id, 0.0) <= now:
                del self._chats[chat_id]
                self._chat_free_at.pop(chat_id, None)


class ScheduledMessages:
    def __init__(
        self, bot: Bot, services: Services, i18n: I18n, pacer: Pacer | None = None
    ) -> None:
        self.bot = bot
        self.services = services
        self.i18n = i18n
        self.pacer = pacer or Pacer()  # the runtime shares one with the new-lead notices

    async def send_morning_messages(self, *, whatever_the_time: bool = False) -> int:
        """Everything due now that nobody claimed (with `whatever_the_time`, everything due
        today: `stagekeeper digest --now`); returns how many were sent."""
        sent = 0
        for due in await self.services.digests.due(whatever_the_time=whatever_the_time):
            if not await self.services.digests.claim(due):
                continue  # another run took it
            try:
                message = await self.compose(due)
            except Exception:
                # Nothing went out: give the claim back, so that the next tick tries again.
                log.exception("the %s for user %s failed", due.kind, due.user_id)
                await self.services.digests.unclaim(due)
                continue
            try:
                delivered = message is not None and await self._deliver(
                    due.user.telegram_id, due.user_id, message
                )
            except Exception:
                # It may have reached them (a timeout after Telegram took it): keep the claim.
                log.exception("the %s for user %s failed", due.kind, due.user_id)
                continue
            if delivered:
                await self.services.digests.sent(due)
                sent += 1
        return sent

    async def compose(self, due: Due) -> render.Composed | None:
        return await compose(due, self.services, self.i18n)

    async def send_task_reminders(self) -> int:
        sent = 0
        for reminder in await self.services.digests.due_tasks():
            owner = reminder.owner
            language = language_of(owner, None, self.i18n.default_locale)
            with self.i18n.context(), self.i18n.use_locale(language):
                message = render.task_reminder(reminder, self.services.settings.zone)
            assert owner.id is not None
            try:
                delivered = await self._deliver(owner.telegram_id, owner.id, message)
            except Exception:
                # The others are claimed too and must still go out; this one may have reached
                # its reader (a timeout after Telegram took it), so it is not sent again.
                log.exception("the reminder of task %s failed", reminder.task.id)
                continue
            if delivered:
                sent += 1
        return sent

    async def _deliver(self, chat_id: int | None, user_id: int, message: render.Composed) -> bool:
        if chat_id is None:
            return False
        try:
            await self._send(
                chat_id,
                lambda: self.bot.send_message(chat_id, message.text, reply_markup=message.keyboard),
            )
        except TelegramForbiddenError as error:
            if NOT_STARTED in error.message:
                # Someone known before they ever opened the bot (an admin from the settings,
                # the demo's people): nothing to pause, the first message they write starts it.
                log.info("user %s has not started the bot yet; not messaged", user_id)
            else:
                log.info("user %s blocked the bot; their messages pause", user_id)
                await self.services.digests.blocked(user_id)
            return False
        except TelegramBadRequest as error:  # e.g. the chat is gone
            log.warning("could not message user %s: %s", user_id, error.message)
            return False
        if message.chart is not None:
            photo = BufferedInputFile(message.chart, filename="funnel.png")
            try:
                await self._send(chat_id, lambda: self.bot.send_photo(chat_id, photo))
            except Exception:
                # The text is out, so the message counts as sent: trying again would send the
                # text a second time for the sake of a picture.
                log.exception("the chart for user %s could not be sent", user_id)
        return True

    async def _send(self, chat_id: int, call: Callable[[], Awaitable[object]]) -> None:
        await self.pacer.wait(chat_id)
        await call()


async def compose(due: Due, services: Services, i18n: I18n) -> render.Composed | None:
    """The morning message of `due` in its reader's language."""
    with i18n.context(), i18n.use_locale(language_of(due.user, None, i18n.default_locale)):
        return await render.compose(due, services.digests)


async def preview(services: Services, i18n: I18n) -> list[tuple[Due, render.Composed]]:
    """What `send_morning_messages(whatever_the_time=True)` would send now, claiming nothing."""
    found = []
    for due in await services.digests.due(whatever_the_time=True):
        message = await compose(due, services, i18n)
        if message is not None:
            found.append((due, message))
    return found


class ResumeMessages(BaseMiddleware):
    """Whoever writes to the bot or taps one of its buttons can be reached again: their
    messages, paused when a send to them was refused, start again. An update middleware after
    AccessGate (the person is known and active) and before OncePerUpdate, so that its write is
    no step of the update."""

    def __init__(self, digests: DigestService) -> None:
        self._digests = digests

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user: User | None = data.get("user")
        wrote = isinstance(event, Update) and (event.message or event.callback_query)
        if user is not None and wrote and data.get("messages_paused"):
            try:
                if await self._digests.resume(user):
                    log.info("user %s wrote to the bot; their messages resume", user.id)
            except Exception:  # their message matters more: the next one tries again
                log.exception("could not resume the messages of user %s", user.id)
        return await handler(event, data)
