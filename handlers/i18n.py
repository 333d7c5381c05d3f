"""Translations: gettext catalogs (`locales/<language>/LC_MESSAGES/messages.po`) compiled in
memory at start-up, so a fresh clone needs no build step; the language is the person's choice
(/lang), else their Telegram language, else DEFAULT_LANGUAGE."""

from __future__ import annotations

import gettext
from io import BytesIO
from pathlib import Path
from typing import Any

from aiogram.types import TelegramObject
from aiogram.utils.i18n import I18n, I18nMiddleware
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).with_name("locales")
LANGUAGES = {"en": "English", "vi": "Tiếng Việt"}


def build_i18n(default_locale: str = "en") -> I18n:
    # A plain I18n (aiogram finds the current one by its exact class), given catalogs compiled
    # from the .po files instead of .mo files on disk.
    i18n = I18n(path=LOCALES, default_locale=default_locale, domain="messages")
    i18n.locales = compile_catalogs()
    return i18n


def compile_catalogs() -> dict[str, gettext.GNUTranslations]:
    translations: dict[str, gettext.GNUTranslations] = {}
    for po in sorted(LOCALES.glob("*/LC_MESSAGES/messages.po")):
        with po.open("rb") as source:
            catalog = read_po(source)
        translations[po.parents[1].name] = _compiled(catalog)
    translations.setdefault("en", _compiled(Catalog(locale="en")))
    return translations


def _compiled(catalog: Catalog) -> gettext.GNUTranslations:
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


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
