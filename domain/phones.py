"""Phone numbers, normalized to E.164 with the organisation's default region (e.g. VN)."""

from __future__ import annotations

import phonenumbers

from domain.errors import InvalidInput


def normalize_phone(raw: str, default_region: str) -> str:
    """`0912 345 678` (region VN) → `+84912345678`. Refuses text that is not a possible number."""
    parsed = parse_phone(raw, default_region)
    if parsed is None:
        raise InvalidInput(f"{raw!r} is not a phone number.")
    return parsed


def parse_phone(raw: str, default_region: str) -> str | None:
    """Like normalize_phone, but None for text that is not a possible number (for search)."""
    text = raw.strip()
    if sum(ch.isdigit() for ch in text) < 6:
        return None
    try:
        number = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or any(ch.isspace() for ch in email):
        raise InvalidInput(f"{raw!r} is not an email address.")
    return email
