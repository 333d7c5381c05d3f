"""The translation catalogs (handlers/locales/<language>/LC_MESSAGES/messages.po) against the
texts of the current source: a text added to handlers/*.py without a translation fails here,
naming the text and where it is. handlers/locales/README.md says how to update the catalogs."""

from __future__ import annotations

import re
from collections import Counter
from functools import cache
from pathlib import Path
from string import Formatter

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from handlers.i18n import build_i18n

HANDLERS = Path(__file__).resolve().parents[2] / "handlers"
LOCALES = HANDLERS / "locales"
LANGUAGES = sorted(path.name for path in LOCALES.iterdir() if path.is_dir())
KEYWORDS = {"_": None, "__": None}  # aiogram's gettext and lazy_gettext, as the source imports them
TAG = re.compile(r"</?[A-Za-z][^<>]*>")


@cache
def source_texts() -> dict[str, str]:
    """Every text the handlers translate, with the first place it appears."""
    texts: dict[str, str] = {}
    for filename, line, message, _comments, _context in extract_from_dir(
        HANDLERS, keywords=KEYWORDS, comment_tags=()
    ):
        msgid = message[0] if isinstance(message, tuple) else message
        if msgid:
            texts.setdefault(msgid, f"handlers/{filename}:{line}")
    return texts


@cache
def catalog(language: str) -> Catalog:
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return read_po(source)


def translated(language: str) -> list[tuple[str, str]]:
    return [
        (message.id, message.string)
        for message in catalog(language)
        if isinstance(message.id, str) and message.id and isinstance(message.string, str)
        if message.string
    ]


def placeholders(text: str) -> set[str]:
    return {field for _literal, field, _spec, _conversion in Formatter().parse(text) if field}


def tags(text: str) -> Counter[str]:
    return Counter(tag.lower() for tag in TAG.findall(text))


def test_the_source_has_texts_to_translate_and_vietnamese_is_among_the_languages() -> None:
    assert len(source_texts()) > 50
    assert "vi" in LANGUAGES


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_catalog_parses_and_declares_its_language(language: str) -> None:
    parsed = catalog(language)
    assert str(parsed.locale) == language
    assert parsed.charset.lower() == "utf-8"


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_entry_is_fuzzy(language: str) -> None:
    parsed = catalog(language)
    fuzzy = [message.id or "(header)" for message in parsed if message.fuzzy]
    assert not parsed.fuzzy, "the header is marked fuzzy"
    assert not fuzzy, f"fuzzy entries in {language}: {fuzzy}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_text_of_the_current_source_is_translated(language: str) -> None:
    done = dict(translated(language))
    missing = [
        f"{where}: {msgid!r}" for msgid, where in source_texts().items() if msgid not in done
    ]
    assert not missing, (
        f"{len(missing)} text(s) have no {language} translation; extract, update and translate "
        "as handlers/locales/README.md says:\n" + "\n".join(missing)
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_translation_keeps_exactly_the_placeholders_of_the_english(language: str) -> None:
    wrong = []
    for msgid, string in translated(language):
        try:
            kept = placeholders(string)
        except ValueError as error:  # an unbalanced brace: .format() would raise
            wrong.append(f"{msgid!r} -> {string!r}: {error}")
            continue
        if kept != placeholders(msgid):
            wrong.append(f"{msgid!r} -> {string!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_translation_keeps_exactly_the_html_tags_of_the_english(language: str) -> None:
    wrong = [
        f"{msgid!r} -> {string!r}"
        for msgid, string in translated(language)
        if tags(string) != tags(msgid)
        # a stray < or > would make Telegram refuse the whole HTML message
        or TAG.sub("", string).count("<") != TAG.sub("", msgid).count("<")
        or TAG.sub("", string).count(">") != TAG.sub("", msgid).count(">")
    ]
    assert not wrong, "\n".join(wrong)


def test_the_bot_loads_every_catalog_and_speaks_it() -> None:
    i18n = build_i18n()
    for language in LANGUAGES:
        assert language in i18n.available_locales
        assert i18n.gettext("Cancelled.", locale=language) != "Cancelled."
