"""/start and /help."""

from __future__ import annotations

from html import escape

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import Message

router = Router(name=__name__)

HELP = (
    "<b>Stagekeeper</b> keeps your leads moving.\n\n"
    "/find <i>name, phone or email</i> — look up a contact\n"
    "/my — your open leads\n"
    "/new — add a contact\n"
    "/help — this message"
)


@router.message(CommandStart(), F.chat.type == "private")
async def start(message: Message) -> None:
    name = message.from_user.first_name if message.from_user else "there"
    await message.answer(f"Hello, {escape(name, quote=False)}! 👋\n\n{HELP}")


@router.message(Command("help"))
async def help_(message: Message) -> None:
    await message.answer(HELP)
