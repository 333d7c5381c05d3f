"""One message that shows how far a long task has come (an import, a bulk move): it appears
only once the task has taken a while, is edited as the task goes on, and ends as the result."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import InaccessibleMessage, InlineKeyboardMarkup, Message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProgressPace:
    """When a progress message first appears and how often it may change (seconds)."""

    delay: float = 1.0  # a task done sooner shows only its result, not a flash of progress
    interval: float = 2.0  # well under Telegram's limit of edits in one chat


class Throttle:
    """Whether a progress text is worth showing now: not before `delay` has passed since the
    start, not sooner than `interval` after the text shown last, and never the text already
    shown (Telegram refuses an edit that changes nothing)."""

    def __init__(
        self,
        pace: ProgressPace,
        clock: Callable[[], float] = time.monotonic,
        *,
        showing: str | None = None,
    ) -> None:
        self._pace = pace
        self._clock = clock
        self._started = clock()
        # A message already showing a text counts as shown at the start.
        self._last_at: float | None = self._started if showing is not None else None
        self._last_text = showing

    def due(self, text: str) -> bool:
        if text == self._last_text:
            return False
        now = self._clock()
        if now - self._started < self._pace.delay:
            return False
        return self._last_at is None or now - self._last_at >= self._pace.interval

    def shown(self, text: str) -> None:
        self._last_at = self._clock()
        self._last_text = text


class ProgressMessage:
    """Progress of one task in one message. `report` is cheap to call as often as the task
    likes: the message is sent or edited in the background, so a slow Telegram never holds
    the task (nor the database it may be writing) up, and an edit still under way makes the
    texts meanwhile be skipped. `finish` waits for that edit, then shows the result."""

    def __init__(
        self,
        chat: Message | InaccessibleMessage,
        pace: ProgressPace,
        *,
        editing: Message | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Progress is sent as a new message to the chat of `chat`, or, with `editing`, edited
        into that message (which already shows something, so it changes no sooner than
        `pace.interval`)."""
        self._chat = chat
        self.message = editing
        showing = (editing.text or editing.caption or "") if editing is not None else None
        self._throttle = Throttle(pace, clock, showing=showing)
        self._sending: asyncio.Task[None] | None = None

    async def report(self, text: str) -> None:
        if self._sending is not None and not self._sending.done():
            return
        if not self._throttle.due(text):
            return
        self._throttle.shown(text)
        self._sending = asyncio.create_task(self._show(text))

    async def finish(self, text: str, keyboard: InlineKeyboardMarkup | None = None) -> Message:
        """Show the result in the progress message (a new message when there was none, or when
        it cannot be edited any more); returns the message showing it."""
        if self._sending is not None:
            await self._sending
        if self.message is not None:
            try:
                edited = await self.message.edit_text(text, reply_markup=keyboard)
            except TelegramBadRequest as error:
                if "not modified" in error.message:
                    return self.message
                log.warning("progress message not edited: %s", error.message)
            else:
                return edited if isinstance(edited, Message) else self.message
        self.message = await self._chat.answer(text, reply_markup=keyboard)
        return self.message

    async def _show(self, text: str) -> None:
        # A progress message that fails to appear or change is no reason to stop the task.
        try:
            if self.message is None:
                self.message = await self._chat.answer(text)
            else:
                await self.message.edit_text(text)
        except TelegramAPIError as error:
            log.warning("progress not shown: %s", error)
