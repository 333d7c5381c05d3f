"""Custom field definitions: what admins declare (a name, a kind — text, number, date or choice —
and the choices) and how a value typed by a person or read from a file becomes the one spelling
stored on contacts, compared by views and written to exports.

Values stay text in the contact's `custom_fields`: a number as plain digits (`1500000.5`), a date
as ISO (`2026-12-25`), a choice as the admin spelled it. A key without a definition (an import's
`custom:<key>` column nobody declared) is kept as text, as before."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from domain.errors import InvalidInput
from domain.model import CustomFieldDef, FieldKind
from domain.text import clean_name, fold
from domain.values import parse_value

NAME_MAX = 64
TEXT_MAX = 1000
CHOICES_MAX = 20
CHOICE_MAX = 40

_DAY_FIRST = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})")


class InvalidFieldValue(InvalidInput):
    code = "field_value"

    def __init__(self, field: CustomFieldDef, raw: str, reason: str) -> None:
        super().__init__(f"{field.name}: {raw!r} {reason}.")
        self.field = field
        self.reason = reason


def definition(name: str, kind: FieldKind, choices: Sequence[str] = ()) -> CustomFieldDef:
    """A new definition, checked: a name of 1 to 64 characters, choices only (and at least two)
    for a choice field, none repeated ignoring case and accents."""
    name = clean_name(name)
    if not name or len(name) > NAME_MAX or name.startswith("custom:"):
        raise InvalidInput(f"A field needs a name of 1 to {NAME_MAX} characters.")
    cleaned = [clean_name(choice) for choice in choices if clean_name(choice)]
    if kind is FieldKind.CHOICE:
        if len(cleaned) < 2 or len(cleaned) > CHOICES_MAX:
            raise InvalidInput(f"A choice field needs 2 to {CHOICES_MAX} choices.")
        if any(len(choice) > CHOICE_MAX for choice in cleaned):
            raise InvalidInput(f"A choice has at most {CHOICE_MAX} characters.")
        if len({fold(choice) for choice in cleaned}) != len(cleaned):
            raise InvalidInput("The same choice is listed twice.")
    elif cleaned:
        raise InvalidInput("Only a choice field has choices.")
    return CustomFieldDef(None, name, name, kind, cleaned)


def canonical(field: CustomFieldDef, raw: str) -> str:
    """The stored spelling of a value of `field`; an empty string clears the field. Raises
    InvalidFieldValue naming the field and why."""
    text = clean_name(str(raw))
    if not text:
        return ""
    if field.kind is FieldKind.TEXT:
        if len(text) > TEXT_MAX:
            raise InvalidFieldValue(field, text[:20] + "…", f"is over {TEXT_MAX} characters")
        return text
    if field.kind is FieldKind.NUMBER:
        try:
            number = parse_value(text.lstrip("+"))
        except ValueError:
            raise InvalidFieldValue(field, text, "is not a number") from None
        return format(number.normalize(), "f")
    if field.kind is FieldKind.DATE:
        return _date(field, text).isoformat()
    for choice in field.choices:
        if fold(choice) == fold(text):
            return choice
    raise InvalidFieldValue(field, text, "is not one of " + ", ".join(field.choices))


def _date(field: CustomFieldDef, text: str) -> date:
    try:
        if len(text) == 10 and text[4] == "-":
            return date.fromisoformat(text)
        matched = _DAY_FIRST.fullmatch(text)
        if matched:
            day, month, year = (int(part) for part in matched.groups())
            return date(year, month, day)
    except ValueError:
        pass
    raise InvalidFieldValue(field, text, "is not a date (DD/MM/YYYY or YYYY-MM-DD)")


def find(fields: Iterable[CustomFieldDef], name: str) -> CustomFieldDef | None:
    """The definition called `name`, ignoring case and accents."""
    key = fold(name)
    return next((field for field in fields if fold(field.name) == key), None)


def canonical_values(fields: Sequence[CustomFieldDef], values: Mapping[str, str]) -> dict[str, str]:
    """`values` with every defined field under its definition's key and spelling (empty values
    dropped); undefined keys are kept as they are."""
    result: dict[str, str] = {}
    for name, raw in values.items():
        field = find(fields, name)
        if field is None:
            result[name] = raw
            continue
        value = canonical(field, raw)
        if value:
            result[field.key] = value
    return result
