"""Middlewares of the bot's HTTP session and of the dispatcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import AnswerCallbackQuery, Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject, Update

from domain.services.users import UserService
from handlers.texts import access_refusal
from storage.ledger import UpdateLedger

log = logging.getLogger(__name__)


class RetryRequests(BaseRequestMiddleware):
    """Telegram's flood control (429 with retry_after) and passing failures (5xx, a dropped
    connection) must not lose a reply: wait as told, or back off, and send again."""

    def __init__(
        self,
        attempts: int = 6,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.attempts = attempts
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._sleep = sleep

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if method.__api_method__ == "getUpdates":  # the polling loop has its own backoff
            return await make_request(bot, method)
        delay = self.first_delay
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt == self.attempts:
                    raise
                wait = float(min(error.retry_after, self.max_delay * 4))
                log.warning("%s: flood control, retrying in %ss", method.__api_method__, wait)
                await self._sleep(wait)
            except (TelegramServerError, TelegramNetworkError) as error:
                if attempt == self.attempts:
                    raise
                log.warning(
                    "%s failed (%s), retrying in %.1fs", method.__api_method__, error, delay
                )
                await self._sleep(delay)
                delay = min(delay * 2, self.max_delay)
        raise AssertionError("unreachable: the last attempt returns or raises")


class LateCallbackAnswers(BaseRequestMiddleware):
    """A button's answer that Telegram no longer takes (answered already, by an earlier delivery
    of the update, or older than its time limit) is dropped: the rest of the reply still goes
    out, and the update is not failed over a spinner that has stopped anyway."""

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        try:
            return await make_request(bot, method)
        except TelegramBadRequest as error:
            if not isinstance(method, AnswerCallbackQuery) or "query is too old" not in str(error):
                raise
            log.info("a button's answer came too late; dropped")
            return Response[TelegramType](ok=True, result=cast(TelegramType, True))


class InFlightUpdates(BaseMiddleware):
    """Counts updates being handled, so that shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        self._count += 1
        self._idle.clear()
        try:
            return await handler(event, data)
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    async def drained(self, grace: float) -> bool:
        """Wait until no update is being handled; False if some still were after `grace` s."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("%d update(s) still in flight at shutdown", self._count)
            return False
        return True


class OncePerUpdate(BaseMiddleware):
    """Every effect of an update once, and an answer to every delivery (storage.ledger): the
    units of work it commits are counted with the update, in their own transactions; a
    redelivery after a crash answers again, committing only the steps not yet done."""

    def __init__(self, ledger: UpdateLedger) -> None:
        self._ledger = ledger

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Update)
        with self._ledger.handling(data["bot"].id, event.update_id):
            return await handler(event, data)


class CurrentUser(BaseMiddleware):
    """Loads the person behind every update (messages, callbacks, documents alike) as `user`
    (None for a stranger), and whether the bot's messages to them are paused as
    `messages_paused` (for ResumeMessages)."""

    def __init__(self, users: UserService) -> None:
        self._users = users

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        sender = data.get("event_from_user")
        if sender is None or sender.is_bot:
            return None
        arrival = await self._users.arriving(sender.id)
        data["user"] = arrival.user
        data["messages_paused"] = arrival.paused
        return await handler(event, data)


class AccessGate(BaseMiddleware):
    """Strangers may only ask for access with /start; switched-off people are told so, in
    their language (this runs after the locale is chosen)."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("user")
        if user is not None and user.active:
            return await handler(event, data)
        assert isinstance(event, Update)
        if user is None and _is_start(event):
            return await handler(event, data)
        text = access_refusal(switched_off=user is not None)
        if event.callback_query is not None:
            await event.callback_query.answer(text, show_alert=True)
        elif event.message is not None:
            await event.message.answer(text)
        return None


def _is_start(update: Update) -> bool:
    message = update.message
    return bool(message and message.text and message.text.split()[0].startswith("/start"))
