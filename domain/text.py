"""Text folding for names and search: case and Vietnamese diacritics are ignored everywhere."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Letters that carry their accent in the letter itself, so Unicode decomposition leaves them alone.
_SPECIAL = str.maketrans({"đ": "d", "Đ": "d", "ð": "d", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l"})
_WORD = re.compile(r"\w+", re.UNICODE)
_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """`Nguyễn Văn Đức` → `nguyen van duc`: lower case, no accents, single spaces."""
    words = [w.lower() if w.isascii() else _fold_word(w) for w in text.split()]
    return " ".join(filter(None, words))


@lru_cache(maxsize=65_536)
def _fold_word(word: str) -> str:
    """A word with letters beyond ASCII, folded. Decomposing and dropping accents never reach
    across a space, so a text folds word by word; and the words of names repeat, across a
    million contacts of an import."""
    decomposed = unicodedata.normalize("NFKD", word.translate(_SPECIAL))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


def search_text(name: str | None, company_key: str | None) -> str:
    """What search looks in for a contact: its folded name and its company's key (the folded
    company name)."""
    return " ".join(part for part in (fold(name or ""), company_key) if part)


def words(text: str) -> list[str]:
    """The folded words of a text, as search indexes them."""
    return _WORD.findall(fold(text))


def clean_name(text: str) -> str:
    """Trimmed, single-spaced, NFC (so `Nguyễn` typed on two keyboards is one name)."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


# Control characters other than whitespace: C0 (NUL, escape…), DEL and C1. No text a person
# types holds them, a NUL ends a string in C and cannot be stored in PostgreSQL at all. Tabs and
# line breaks are whitespace, which clean_name turns into spaces.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")


def refuse_control_characters(text: str) -> str:
    """`text` itself; a ValueError naming the first control character in it otherwise. The one
    rule for every text from outside (the HTTP API's fields, an import's cells)."""
    if text.isprintable():  # the common case, checked at C speed: a million names per import
        return text
    found = _CONTROL.search(text)
    if found is not None:
        raise ValueError(f"contains a control character (U+{ord(found.group()):04X})")
    return text
