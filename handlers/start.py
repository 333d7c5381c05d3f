"""/start and /help."""

from __future__ import annotations

from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

HELP = (
    "<b>Stagekeeper</b> keeps your leads moving.\n\n"
    "/find <i>name, phone or email</i> — look up a contact\n"
    "/my — your open leads\n"
    "/new — add a contact\n"
    "/help — this message"
)


async def start(message: Message) -> None:
    name = message.from_user.first_name if message.from_user else "there"
    await message.answer(f"Hello, {escape(name, quote=False)}! 👋\n\n{HELP}")


async def help_(message: Message) -> None:
    await message.answer(HELP)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(start, CommandStart(), F.chat.type == "private")
    router.message.register(help_, Command("help"))
    return router
