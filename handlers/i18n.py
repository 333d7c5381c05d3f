"""Translations: gettext catalogs (`locales/<language>/LC_MESSAGES/messages.po`) compiled at
start-up, so a fresh clone needs no build step; the language is the person's choice
(/lang), else their Telegram language, else DEFAULT_LANGUAGE."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject
from aiogram.utils.i18n import I18n, I18nMiddleware
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).with_name("locales")
LANGUAGES = {"en": "English", "vi": "Tiếng Việt", "zh": "中文"}


def build_i18n(default_locale: str = "en") -> I18n:
    """An I18n with every catalog of `locales/`, compiled from its .po file (English, the
    language of the source, needs none)."""
    with tempfile.TemporaryDirectory() as compiled:
        for po in sorted(LOCALES.glob("*/LC_MESSAGES/messages.po")):
            with po.open("rb") as source:
                catalog = read_po(source)
            target = Path(compiled, po.parents[1].name, "LC_MESSAGES", "messages.mo")
            target.parent.mkdir(parents=True)
            with target.open("wb") as mo:
                write_mo(mo, catalog)
        return I18n(path=compiled, default_locale=default_locale, domain="messages")


def language_of(user: Any, telegram_language: str | None, default: str) -> str:
    """The language to speak to someone in."""
    if user is not None and getattr(user, "language", None) in LANGUAGES:
        return str(user.language)
    short = (telegram_language or "").split("-")[0].lower()
    return short if short in LANGUAGES else default


class PersonLocale(I18nMiddleware):
    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        sender = data.get("event_from_user")
        return language_of(
            data.get("user"), sender.language_code if sender else None, self.i18n.default_locale
        )
