"""Middlewares of the bot's HTTP session and of the dispatcher."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware, Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import TelegramObject

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
