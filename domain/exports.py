"""The CSV export's columns and cells: what a contact looks like as a spreadsheet row.

Headers are plain lower_snake_case, the field names that `stagekeeper import --map` takes, so
that a file exported here imports back without a mapping; custom fields follow as
`custom:<key>` columns, one per key present in the exported contacts, sorted.

Every cell goes through `neutralize` (OWASP "CSV injection"): a spreadsheet runs a cell whose
text begins with `=`, `+`, `-` or `@` as a formula (`=HYPERLINK(…)` leaks data when clicked,
`=cmd|' /C calc'!A0` starts programs through DDE), and a leading tab or carriage return can
hide such a start. The rule, precisely:

1. A cell is *hostile* when its first character is `=`, `+`, `-`, `@`, a tab or a carriage
   return — or when it starts with spaces or line feeds followed by `=`, `+`, `-` or `@` (some
   spreadsheets skip leading blanks before parsing).
2. Except when the whole cell is exactly one of two harmless shapes, which stay untouched so
   that the data survives: a phone number in E.164 (`+` then 7 to 15 digits, the first not 0:
   `+84912345678`) or a plain decimal number (an optional sign, digits, optionally a point and
   digits: `-12.5`, `+3`). A spreadsheet reads either as a number literal: no function, no
   reference, nothing runs. `-2+3`, `+84 912 345 678` or `-1e3` are not these shapes and are
   neutralized.
3. A hostile cell gets a leading apostrophe (`'=HYPERLINK(…)`), which makes a spreadsheet show
   the text as it is instead of evaluating it.
4. So that the import can undo rule 3 exactly (`restore`), a cell that already starts with
   apostrophes followed by a hostile text gets one more (`'=x` → `''=x`); every other cell is
   written unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, tzinfo

from domain.model import Contact, Stage

CUSTOM_PREFIX = "custom:"
TAG_SEPARATOR = "; "
BASE_COLUMNS: tuple[str, ...] = (
    "id",
    "name",
    "phone",
    "email",
    "external_id",
    "company",
    "source",
    "owner",
    "stage",
    "stage_category",
    "value",
    "tags",
    "created_at",
    "stage_entered_at",
    "last_activity_at",
)

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_AFTER_BLANKS = re.compile(r"[ \n]+[=+\-@]")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def is_hostile(cell: str) -> bool:
    """Whether a spreadsheet could run this text as a formula (rules 1 and 2 above)."""
    if not cell:
        return False
    if not (cell.startswith(_TRIGGERS) or _AFTER_BLANKS.match(cell)):
        return False
    return not (_E164.fullmatch(cell) or _PLAIN_NUMBER.fullmatch(cell))


def neutralize(cell: str) -> str:
    """The cell as written to the file: hostile text behind an apostrophe (rules 3 and 4)."""
    return "'" + cell if is_hostile(cell.lstrip("'")) else cell


def restore(cell: str) -> str:
    """The inverse of `neutralize`, for the import: `restore(neutralize(x)) == x` for any x."""
    if cell.startswith("'") and is_hostile(cell[1:].lstrip("'")):
        return cell[1:]
    return cell


def custom_column(key: str) -> str:
    return CUSTOM_PREFIX + key


def custom_keys_in_order(keys: Iterable[str], defined: Sequence[str] = ()) -> list[str]:
    """Custom field columns in a stable order: every defined field in the admins' order (a
    column even when no contact has a value yet, so that the file can be filled in and
    imported back), then the other keys by name, ignoring case."""
    others = sorted(set(keys) - set(defined), key=lambda key: (key.casefold(), key))
    return [*defined, *others]


def header(custom_keys: Iterable[str]) -> list[str]:
    return [*BASE_COLUMNS, *(neutralize(custom_column(key)) for key in custom_keys)]


def timestamp(moment: datetime | None, zone: tzinfo) -> str:
    """ISO 8601 with the offset, in the organisation's time zone: `2026-11-22T14:30:00+07:00`."""
    return moment.astimezone(zone).isoformat(timespec="seconds") if moment else ""


def row(
    contact: Contact,
    *,
    stage: Stage | None,
    owner: str | None,
    company: str | None,
    custom_keys: Iterable[str],
    zone: tzinfo,
) -> list[str]:
    """One contact's cells, in the order of `header(custom_keys)`, already neutralized."""
    custom: Mapping[str, str] = contact.custom_fields
    cells = [
        str(contact.id) if contact.id is not None else "",
        contact.name or "",
        contact.phone or "",
        contact.email or "",
        contact.external_id or "",
        company or "",
        contact.source or "",
        owner or "",
        stage.name if stage else "",
        stage.category.value if stage else "",
        str(contact.value) if contact.value is not None else "",
        TAG_SEPARATOR.join(contact.tags),
        timestamp(contact.created_at, zone),
        timestamp(contact.stage_entered_at, zone),
        timestamp(contact.last_activity_at, zone),
        *(str(custom.get(key, "")) for key in custom_keys),
    ]
    return [neutralize(cell) for cell in cells]
