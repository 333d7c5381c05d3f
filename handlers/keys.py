"""Inline keyboards, built as aiogram's InlineKeyboardBuilder builds them, but without its deep
copy of every button so far at each button added and at export: a card's keyboard cost more
than the rest of drawing the card. Buttons are never changed once added, so rows are copied
and buttons shared."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton
from aiogram.utils.keyboard import InlineKeyboardBuilder


class Keys(InlineKeyboardBuilder):
    def export(self) -> list[list[InlineKeyboardButton]]:
        return [list(row) for row in self._markup]
