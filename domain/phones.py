"""Phone numbers, normalized to E.164 with the organisation's default region (e.g. VN), and
email addresses: what a contact may be found by."""

from __future__ import annotations

import re

import phonenumbers

from domain.errors import InvalidInput


def normalize_phone(raw: str, default_region: str) -> str:
    """`0912 345 678` (region VN) → `+84912345678`. Refuses, saying why, text that is not a
    number of its country (`0000000000`, a 7-digit US local number) or carries an extension."""
    number = valid_phone(raw, default_region)
    if number is None:
        raise InvalidInput(phone_refusal(raw, default_region) + ".")
    return number


def valid_phone(raw: str, default_region: str) -> str | None:
    """normalize_phone's number, or None: what a contact's phone may be."""
    number = _parsed(raw, default_region)
    if number is None or number.extension or not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_refusal(raw: str, default_region: str) -> str:
    """Why valid_phone said None, as a clause."""
    shown = raw.strip()
    number = _parsed(raw, default_region)
    if number is not None and number.extension:
        # E.164 has no room for it: keeping the number alone would lose it without a word.
        return (
            f"{shown!r} has an extension (ext. {number.extension}); write the number alone "
            "and the extension in a note"
        )
    return f"{shown!r} is not a phone number"


def parse_phone(raw: str, default_region: str) -> str | None:
    """A number of a possible length in E.164, or None: what a search looks for. Lenient, so
    that a number stored before the rules tightened is still found."""
    number = _parsed(raw, default_region)
    if number is None or not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _parsed(raw: str, default_region: str) -> phonenumbers.PhoneNumber | None:
    text = raw.strip()
    if sum(ch.isdigit() for ch in text) < 6:
        return None
    try:
        return phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException:
        return None


# A dot-separated local part (no empty piece, no control character) and a domain of
# letter-or-digit labels (hyphens inside) ending in a top-level domain of letters; Unicode
# letters allowed (IDN addresses).
_EMAIL = re.compile(
    r"[^\s@.\x00-\x1f\x7f]+(?:\.[^\s@.\x00-\x1f\x7f]+)*"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[\w-]{1,59})"
)


def is_email(address: str) -> bool:
    return _EMAIL.fullmatch(address) is not None


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if not is_email(email):
        raise InvalidInput(f"{raw!r} is not an email address.")
    return email
