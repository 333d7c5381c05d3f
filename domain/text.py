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
    return " ".join(filter(None, map(_fold_word, text.split())))


@lru_cache(maxsize=65_536)
def _fold_word(word: str) -> str:
    """One word, folded. Decomposing and dropping accents never reach across a space, so a text
    folds word by word; and the words of names repeat, across a million contacts of an import."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.translate(_SPECIAL))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(bare.casefold().split())


def words(text: str) -> list[str]:
    """The folded words of a text, as search indexes them."""
    return _WORD.findall(fold(text))


def clean_name(text: str) -> str:
    """Trimmed, single-spaced, NFC (so `Nguyễn` typed on two keyboards is one name)."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()
