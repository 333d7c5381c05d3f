"""The Bot API session of the bot: aiogram's, keeping the types it reads answers into."""

from __future__ import annotations

from typing import Any, ClassVar

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.methods import Response, TelegramMethod


class BotSession(AiohttpSession):
    """aiogram reads each answer into `Response[<the method's result type>]`, a pydantic generic
    it parametrizes per request. pydantic keeps a parametrized type only while something else
    refers to it, so every request built it anew, schema and validator included: more CPU than
    the rest of a tap. Referring to each one here makes that a lookup."""

    _response_types: ClassVar[dict[Any, Any]] = {}

    def check_response(
        self, bot: Bot, method: TelegramMethod[Any], status_code: int, content: str
    ) -> Response[Any]:
        returning = method.__returning__
        if returning not in self._response_types:
            self._response_types[returning] = Response[returning]  # type: ignore[valid-type]
        return super().check_response(bot, method, status_code, content)
