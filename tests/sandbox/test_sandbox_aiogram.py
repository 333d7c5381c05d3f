"""A real aiogram Bot, pointed at the emulator, works as it would against Telegram."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramRetryAfter
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup


@pytest.fixture
async def bot(sandbox) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(sandbox.base_url))
    bot = Bot(sandbox.token, session=session, default=DefaultBotProperties(parse_mode="HTML"))
    yield bot
    await bot.session.close()


async def test_aiogram_sends_and_edits_a_message(sandbox, bot):
    chat_id = await sandbox.started_chat()
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Won", callback_data="stage:won")]]
    )
    sent = await bot.send_message(chat_id, "<b>Lead</b> An", reply_markup=keyboard)
    assert sent.text == "Lead An"
    assert sent.entities is not None
    assert sent.entities[0].type == "bold"

    edited = await bot.edit_message_text(
        "<i>Customer</i> An", chat_id=chat_id, message_id=sent.message_id
    )
    assert not isinstance(edited, bool)
    assert edited.text == "Customer An"
    assert edited.edit_date is not None

    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "<i>Customer</i> An", chat_id=chat_id, message_id=sent.message_id
        )
    chat = await sandbox.chat(chat_id, after=1)
    assert [(m["text"], m["edited"]) for m in chat["messages"]] == [("Customer An", True)]


async def test_aiogram_receives_updates_and_uploads_files(sandbox, bot):
    chat_id = await sandbox.started_chat()
    [update] = await bot.get_updates(timeout=1)
    assert update.message is not None
    assert update.message.text == "/start"
    document = await bot.send_document(
        chat_id, BufferedInputFile(b"a,b\n", filename="export.csv"), caption="Export"
    )
    assert document.document is not None
    assert document.document.file_name == "export.csv"
    file = await bot.get_file(document.document.file_id)
    assert file.file_path is not None
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None
    assert downloaded.read() == b"a,b\n"


async def test_aiogram_sees_telegram_errors_as_its_exceptions(sandbox, bot):
    chat_id = await sandbox.started_chat()
    await sandbox.user_side("faults", method="sendMessage", error_code=429, retry_after=2)
    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.send_message(chat_id, "hi")
    assert retry.value.retry_after == 2
    await sandbox.add_user(chat_id, blocked=True)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(chat_id, "hi")
