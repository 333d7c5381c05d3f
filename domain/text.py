"""Text folding for names and search: case and Vietnamese diacritics are ignored everywhere."""

from __future__ import annotations

import re
import unicodedata

# Letters that carry their accent in the letter itself, so Unicode decomposition leaves them alone.
_SPECIAL = str.maketrans({"đ": "d", "Đ": "d", "ð": "d", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l"})
_WORD = re.compile(r"\w+", re.UNICODE)
_SPACES = re.compile(r"\s+")


def fold(text: str) -> str:
    """`Nguyễn Văn Đức` → `nguyen van duc`: lower case, no accents, single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_SPECIAL))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", bare.casefold()).strip()


def words(text: str) -> list[str]:
    """The folded words of a text, as search indexes them."""
    return _WORD.findall(fold(text))


def clean_name(text: str) -> str:
    """Trimmed, single-spaced, NFC (so `Nguyễn` typed on two keyboards is one name)."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()
