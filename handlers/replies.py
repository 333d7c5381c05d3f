"""Answering a button: edit the message it is on, and answer the callback exactly once."""

from __future__ import annotations

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _


async def show(
    query: CallbackQuery,
    text: str,
    keyboard: InlineKeyboardMarkup | None,
    *,
    answered: bool = False,
) -> None:
    """Edit the message the button is on (an unchanged message is fine), and answer the
    button unless that was done already with a text."""
    message = query.message
    if not isinstance(message, Message):
        await query.answer(
            _("This message is too old to change; send the command again."), show_alert=True
        )
        return
    try:
        await message.edit_text(text, reply_markup=keyboard)
    except TelegramBadRequest as error:
        if "can't be edited" in error.message or "to edit not found" in error.message:
            # Not the bot's own message, or gone: the answer comes as a new one.
            await message.answer(text, reply_markup=keyboard)
        elif "not modified" not in error.message:
            raise
    if not answered:
        await query.answer()
