"""Amounts as people write them (see domain.imports' notes): `15.000.000`, `15,000,000 ₫`,
`1.500.000,50`, `1.5e6`. Shared by imports and number custom fields."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final

VALUE_LIMIT: Final = Decimal(10) ** 16  # storage keeps Numeric(18, 2)

_AMOUNT_JUNK = re.compile(r"[\s\u00a0\u202f'₫$€]|vnd|usd|đ", re.IGNORECASE)
_PLAIN_AMOUNT = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_GROUPED = re.compile(r"[1-9]\d{0,2}(?:[.,]\d{3})+")


def parse_value(raw: str) -> Decimal:
    """An amount as people write it (see the module's notes). Raises ValueError with a reason."""
    text = _AMOUNT_JUNK.sub("", raw)
    if _PLAIN_AMOUNT.fullmatch(text) is None or _GROUPED.fullmatch(text) is not None:
        text = _ungrouped(text, raw)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not an amount") from None
    if not value.is_finite():
        raise ValueError(f"{raw!r} is not an amount")
    if value >= VALUE_LIMIT:
        raise ValueError(f"{raw!r} is too large an amount")
    if value != value.quantize(Decimal("0.01")):
        raise ValueError(f"{raw!r} has more than 2 decimals")
    return value


def _ungrouped(text: str, raw: str) -> str:
    if text.startswith("-"):
        raise ValueError(f"{raw!r} is negative")
    dot, comma = text.rfind("."), text.rfind(",")
    if dot >= 0 and comma >= 0:
        mark = "." if dot > comma else ","
        whole, _, fraction = text.rpartition(mark)
        if _GROUPED.fullmatch(whole) is None and not whole.isdigit():
            raise ValueError(f"{raw!r} is not an amount")
        if not fraction.isdigit():
            raise ValueError(f"{raw!r} is not an amount")
        return whole.replace(".", "").replace(",", "") + "." + fraction
    if _GROUPED.fullmatch(text) is not None and len(set(text) & {".", ","}) == 1:
        return text.replace(".", "").replace(",", "")
    if text.count(",") == 1 and "." not in text:
        return text.replace(",", ".")
    raise ValueError(f"{raw!r} is not an amount")
