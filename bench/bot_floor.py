"""The floor that `bench.bot_load` compares the bot with: aiogram's bare dispatch of an update to
a handler that answers at once (a message with "ok", a button with an empty answer), served as
`stagekeeper webhook` serves, from the same settings in the environment. No database, no
middleware: what an update costs before Stagekeeper does anything.

    python -m bench.bot_floor        # BOT_TOKEN, TELEGRAM_API_BASE, WEBHOOK_* as for the bot"""

from __future__ import annotations

import contextlib

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, Message
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.settings import Settings


async def answer_message(message: Message) -> None:
    await message.answer("ok")


async def answer_button(query: CallbackQuery) -> None:
    with contextlib.suppress(TelegramBadRequest):  # a replayed query is too old to answer
        await query.answer()


async def healthy(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    settings = Settings()
    assert settings.bot_token is not None, "BOT_TOKEN is not set"
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    bot = Bot(settings.bot_token.get_secret_value(), session=session)
    dispatcher = Dispatcher()
    dispatcher.message.register(answer_message)
    dispatcher.callback_query.register(answer_button)
    app = web.Application()
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    SimpleRequestHandler(dispatcher, bot, secret_token=secret, handle_in_background=False).register(
        app, path=settings.webhook_path
    )
    app.router.add_get("/api/v1/healthz", healthy)
    web.run_app(app, host=settings.webhook_host, port=settings.webhook_port, print=None)


if __name__ == "__main__":
    main()
