"""Reading a contacts file for import (issue 5): bytes in, normalized rows and row errors out.

This is the parsing half of an import. It recognises the file (CSV in UTF-8, UTF-8 with BOM,
UTF-16 or Windows-1258, or an XLSX workbook), its delimiter and its headers (respond.io, HubSpot,
our own export, Vietnamese, or `--map COLUMN=FIELD`), and turns every row into an `ImportRow` with
normalized values, or into `RowError`s naming the row, the column and the reason. Matching rows
against the database and applying them in one transaction is the import service's job.

A file that cannot be an import at all (binary junk, wrong delimiter, no identifier column, a
gigantic cell) raises `ImportRefused`, before any row is read when the problem shows in the first
64 KiB, else while `ParsedFile.rows` is iterated; the caller applies nothing in either case.

Decisions (see the tests for each):
- Empty cell or absent column → None: "leave this field alone". Tags are the one field where the
  difference matters: no tags column → `tags=None`; a tags column with an empty cell → `tags=[]`.
  No default tags are ever added.
- Our export's `id` column is our internal id: it is recognised and ignored, never taken as an
  external id (map it explicitly with `--map id=external_id` if you mean it).
- Amounts: spaces, currency marks and thousands separators are dropped. `15000000`, `15,000,000`,
  `15.000.000`, `15 000 000 ₫` and `1.5e6` all read 15,000,000. When both `.` and `,` appear, the
  last one is the decimal mark (`1.500.000,50`, `1,500,000.50`). A single `.` or `,` followed by
  exactly three digits, after one to three digits that do not start with 0, is a thousands
  separator (`15.000` is fifteen thousand: VND has no decimals); otherwise it is the decimal mark
  (`1.5`, `1,5`). Negative amounts, more than 2 decimals and 10^16 or more are refused.
- Dates: ISO (`2024-03-01`, `2024-03-01T10:20`, with an offset or Z) or day first
  (`01/03/2024`, `01-03-2024`, `01.03.2024`, optionally with `HH:MM[:SS]`); `03/25/2024` is
  refused rather than guessed. Naive values are in the organisation's time zone; results are UTC.
  Dates after `now` (plus a few minutes of clock skew) or before 1900 are refused, and so is a
  stage change dated before the contact's creation.
- Tags split on `;` when the cell has one, else on `,`; trimmed, NFC, duplicates (ignoring case)
  dropped.
- A row without any phone, email or external id is refused: it could not be matched again.
- A row whose phone, email or external id already appeared on an earlier row is refused, naming
  that earlier row.
- A header equal to a defined custom field's name or key (compared as headers are: case, accents,
  spaces and punctuation ignored) is read as that field, with no mapping. A built-in header wins
  over a custom field of the same name (a field called "Source" does not take the `Source`
  column), and the file says so in `shadowed_columns`, since the admin may have meant the field;
  `--map` decides otherwise. Built-in aliases that are custom fields themselves (HubSpot's
  `Lead Status`) give way to a defined field of that name.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import re._constants as regex_constants
import re._parser as regex_parser
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from itertools import islice
from typing import IO, Any, Final

from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

from domain.errors import ImportRefused, InvalidInput, MissingIdentifier
from domain.phones import is_email, phone_refusal, valid_phone
from domain.services.contacts import CLOCK_SKEW, NAME_MAX, TEXT_MAX, ContactDraft
from domain.text import clean_name, fold, refuse_control_characters
from domain.values import parse_value
from domain.workbooks import DEFAULT_LIMITS, FileLimits, Sheet, Uncalculated, open_sheet

# The import fields of DESIGN §4 ("Import fields for --map"), plus `custom:<field>`.
FIELDS: Final = (
    "name",
    "phone",
    "email",
    "external_id",
    "company",
    "source",
    "owner",
    "stage",
    "value",
    "tags",
    "created_at",
    "stage_changed_at",
    "lost_reason",
)
# Also accepted by --map: parts of a name that are joined (family name first, then first name,
# then last name), and `ignore` to leave a recognised column out.
NAME_PARTS: Final = ("family_name", "first_name", "last_name")
IGNORE: Final = "ignore"
IDENTIFIERS: Final = ("phone", "email", "external_id")
CUSTOM_PREFIX: Final = "custom:"
# The headers of our own export, in order (custom fields follow as `custom:<key>`).
EXPORT_COLUMNS: Final = ("id", *FIELDS)

CELL_MAX: Final = 10_000  # characters in one cell; a longer cell rejects its row
FIELD_LIMIT: Final = 131_072  # a cell longer than this refuses the whole file (csv's own limit)
LINE_LIMIT: Final = 1_048_576  # characters in one physical line
SAMPLE_SIZE: Final = 65_536  # bytes looked at to choose the encoding and the delimiter
DELIMITERS: Final = ",;\t|"
ERRORS_WITH_VALUES: Final = 10_000  # row errors beyond this keep no copy of the row's cells


class _Missing:
    pass


_MISSING: Final = _Missing()


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a row was rejected. `row` counts as a spreadsheet does (the header is row 1);
    `column` is the file's header, or None when the problem is the whole row."""

    row: int
    column: str | None
    reason: str
    values: tuple[str, ...] = ()  # the row's original cells (for the error report), if kept


@dataclass(slots=True)
class ImportRow:
    """One accepted row, normalized. None means "the file says nothing": leave the field alone."""

    row: int
    name: str | None = None
    phone: str | None = None  # E.164
    email: str | None = None  # lower case
    external_id: str | None = None
    company: str | None = None
    source: str | None = None
    owner: str | None = None  # a person's name (or Telegram id) as written in the file
    stage: str | None = None  # a stage's name as written in the file
    value: Decimal | None = None
    tags: list[str] | None = None  # None: the file has no tags column; []: an empty tags cell
    created_at: datetime | None = None  # UTC
    stage_changed_at: datetime | None = None  # UTC
    lost_reason: str | None = None
    custom_fields: dict[str, str] = field(default_factory=dict)

    def identifiers(self) -> dict[str, str]:
        """The row's phone, email and external id that are present."""
        found = {"phone": self.phone, "email": self.email, "external_id": self.external_id}
        return {key: value for key, value in found.items() if value is not None}

    def draft(self) -> ContactDraft:
        """The row as a ContactDraft for ContactService.add (already normalized values)."""
        return ContactDraft(
            name=self.name,
            phone=self.phone,
            email=self.email,
            external_id=self.external_id,
            company=self.company,
            source=self.source,
            stage=self.stage,
            owner=self.owner,
            value=None if self.value is None else str(self.value),
            lost_reason=self.lost_reason,
            tags=list(self.tags or []),
            custom_fields=dict(self.custom_fields),
            created_at=self.created_at,
        )


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows of an import file, as read a batch at a time (storage.import_batches)."""

    rows: list[ImportRow]
    read: int  # data rows read from the file so far, the rejected ones included


@dataclass(slots=True)
class ParsedFile:
    """A recognised file. `rows` is a single-use iterator; `errors` is complete once it is
    exhausted. Iterating may raise ImportRefused when the file turns out broken further down."""

    format: str  # "csv" or "xlsx"
    encoding: str | None  # None for xlsx
    delimiter: str | None  # None for xlsx
    header: list[str]
    columns: dict[str, str]  # source header → field (custom fields as `custom:<key>`)
    unknown_columns: list[str]  # neither recognised nor mapped; ignored
    ignored_columns: list[str]  # recognised as not imported (our export's `id`) or mapped `ignore`
    rows: Iterator[ImportRow]
    errors: list[RowError] = field(default_factory=list)
    # Columns read as a defined custom field by their header: (header, the field's name).
    field_columns: list[tuple[str, str]] = field(default_factory=list)
    # Columns read as a built-in field although a custom field has the same name:
    # (header, the built-in field, the custom field's name).
    shadowed_columns: list[tuple[str, str, str]] = field(default_factory=list)
    sheet: str | None = None  # the workbook's sheet read (its first)
    other_sheets: list[str] = field(default_factory=list)  # and those left unread

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(self.columns.values()) | ({"name"} & _name_parts(self.columns))

    @property
    def has_tags(self) -> bool:
        return "tags" in self.columns.values()

    def error_report(self) -> bytes:
        return error_report(self.errors, self.header)


def _name_parts(columns: dict[str, str]) -> set[str]:
    return {"name"} if set(columns.values()) & set(NAME_PARTS) else set()


# ---------------------------------------------------------------------------------------------
# Encodings


def detect_encoding(head: bytes) -> str:
    """The codec name for a text file starting with `head` (the first 64 KiB is plenty).
    Refuses binary files. `xlsx` for an Excel workbook."""
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise ImportRefused(
            "This is an old Excel .xls file; save it as .xlsx or CSV and send it again."
        )
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if not head:
        raise ImportRefused("The file is empty.")
    if b"\x00" in head and _too_much_junk(len(_JUNK_BYTES.findall(head)), len(head)):
        return _bomless_utf16(head)
    if _valid_utf8(head, final=len(head) < SAMPLE_SIZE):
        return "utf-8"
    return "cp1258"


def _bomless_utf16(head: bytes) -> str:
    sample = head[:4096]
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    pairs = len(sample) // 2 or 1
    if odd > 0.3 * pairs and even < 0.05 * pairs:
        return "utf-16-le"
    if even > 0.3 * pairs and odd < 0.05 * pairs:
        return "utf-16-be"
    raise ImportRefused("This looks like a binary file, not a CSV or XLSX table (NUL bytes).")


def _valid_utf8(data: bytes, *, final: bool) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final)
    except UnicodeDecodeError:
        return False
    return True


def decode(data: bytes) -> str:
    """The whole text of a CSV file, NFC. See open_text for a streaming equivalent."""
    encoding = _text_encoding(data)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise _undecodable(encoding, error.start) from None
    _refuse_junk(text[:SAMPLE_SIZE])
    return unicodedata.normalize("NFC", text)


def _text_encoding(data: bytes) -> str:
    encoding = detect_encoding(data[:SAMPLE_SIZE])
    if encoding == "xlsx":
        raise ImportRefused("This is an XLSX workbook, not a text file.")
    if encoding == "utf-8" and len(data) > SAMPLE_SIZE and not _utf8_throughout(data):
        # Valid UTF-8 at the start but not further down: a legacy Vietnamese file.
        encoding = "cp1258"
    return encoding


def _utf8_throughout(data: bytes) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(data)
    step = 1 << 20
    try:
        for start in range(0, len(data), step):
            decoder.decode(view[start : start + step], start + step >= len(data))
    except UnicodeDecodeError:
        return False
    return True


def _undecodable(encoding: str, position: int) -> ImportRefused:
    return ImportRefused(
        f"The file is not readable as {encoding} (byte {position}); "
        "save it as CSV UTF-8 and send it again."
    )


_JUNK = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")
_JUNK_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _refuse_junk(text: str) -> None:
    if _too_much_junk(len(_JUNK.findall(text)), len(text)):
        raise ImportRefused("This looks like a binary file, not a CSV or XLSX table.")


def _too_much_junk(junk: int, size: int) -> bool:
    """A few stray control characters (a NUL) reject their rows; more make a binary file."""
    return junk > max(8, size // 200)


# ---------------------------------------------------------------------------------------------
# Headers

# Headers each field is recognised by, compared by header_key (case, accents, spaces and
# punctuation ignored, so `Contact ID`, `ContactID` and `contact_id` are one). Sources:
# respond.io's contact export, HubSpot's contact export, our export, Vietnamese spreadsheets.
_ALIASES: dict[str, str] = {
    "name": "name|full name|contact name|customer name|họ và tên|họ tên|tên đầy đủ"
    "|tên khách hàng|tên liên hệ",
    "family_name": "họ|họ đệm|họ và tên đệm",
    "first_name": "first name|given name",
    "last_name": "last name|surname|family name",
    "phone": "phone|phone number|phone no|mobile|mobile phone|mobile phone number|mobile number"
    "|telephone|tel|số điện thoại|điện thoại|sđt|số di động|di động",
    "email": "email|e-mail|email address|địa chỉ email|thư điện tử",
    "external_id": "external id|contact id|record id|mã khách hàng|mã kh|mã liên hệ",
    "company": "company|company name|organization|organisation|công ty|tên công ty"
    "|doanh nghiệp|tổ chức",
    "source": "source|lead source|original source|contact source|nguồn|nguồn khách hàng"
    "|nguồn liên hệ",
    "owner": "owner|assignee|assigned to|contact owner|owner name|người phụ trách"
    "|nhân viên phụ trách|phụ trách",
    "stage": "stage|lifecycle|lifecycle stage|giai đoạn|giai đoạn vòng đời|vòng đời",
    "value": "value|amount|deal value|deal amount|giá trị|số tiền",
    "tags": "tags|tag|labels|thẻ|nhãn",
    "created_at": "created at|created|create date|created date|date created|created on"
    "|ngày tạo|thời gian tạo",
    "stage_changed_at": "stage changed at|stage entered at|stage date|ngày chuyển giai đoạn"
    "|ngày vào giai đoạn",
    "lost_reason": "lost reason|closed lost reason|lý do thất bại|lý do mất",
    # HubSpot's "Lead Status" is not its lifecycle stage: kept as a custom field.
    "custom:lead_status": "lead status",
    # Our export's internal id and bookkeeping columns: recognised, never imported.
    IGNORE: "id|updated at|last activity at|version",
}

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def header_key(header: str) -> str:
    """`Số điện thoại` → `sodienthoai`, `Phone_Number` → `phonenumber`: what aliases compare."""
    return _NOT_ALNUM.sub("", fold(header))


_KNOWN: dict[str, str] = {
    header_key(alias): target
    for target, aliases in _ALIASES.items()
    for alias in aliases.split("|")
}
_TEN = header_key("Tên")  # Vietnamese "name", or the given name when a "Họ" column exists


def recognise(header: str) -> str | None:
    """The field a header stands for (`custom:<key>` and `ignore` included), or None."""
    text = header.strip()
    if text[: len(CUSTOM_PREFIX)].lower() == CUSTOM_PREFIX:
        key = text[len(CUSTOM_PREFIX) :].strip()
        return CUSTOM_PREFIX + key if key else None
    return _KNOWN.get(header_key(text))


@dataclass(frozen=True, slots=True)
class _Defined:
    target: str  # `custom:<key>`
    name: str


def _defined_headers(defined: Sequence[tuple[str, str]]) -> dict[str, _Defined]:
    """The header keys that name a defined custom field, from its (key, name): its name, or
    else its key. Where two fields compare equal as headers the first defined wins."""
    headers: dict[str, _Defined] = {}
    for spelling in (1, 0):  # names first: a name is what the admin sees and types
        for pair in defined:
            found = _Defined(CUSTOM_PREFIX + pair[0], pair[1])
            headers.setdefault(header_key(pair[spelling]), found)
    headers.pop("", None)
    return headers


def parse_map(items: Sequence[str]) -> dict[str, str]:
    """`["Mobile=phone", "Hạng=custom:tier"]` → `{"Mobile": "phone", "Hạng": "custom:tier"}`.
    Refuses an unknown field, naming the allowed ones."""
    mapping: dict[str, str] = {}
    for item in items:
        column, equals, target = item.rpartition("=")
        column, target = column.strip(), target.strip()
        if not equals or not column:
            raise InvalidInput(f"--map takes COLUMN=FIELD, not {item!r}.")
        checked = _checked_field(target)
        if column in mapping:
            raise InvalidInput(f"--map names the column {column!r} twice.")
        mapping[column] = checked
    return mapping


def _checked_field(target: str) -> str:
    lowered = target.lower()
    if lowered in FIELDS or lowered in NAME_PARTS or lowered == IGNORE:
        return lowered
    if lowered.startswith(CUSTOM_PREFIX):
        key = target[len(CUSTOM_PREFIX) :].strip()
        if key and len(key) <= 64:
            return CUSTOM_PREFIX + key
    allowed = ", ".join((*FIELDS, f"{CUSTOM_PREFIX}<field>", *NAME_PARTS, IGNORE))
    raise InvalidInput(f"{target!r} is not an import field; the fields are: {allowed}.")


@dataclass(slots=True)
class _Layout:
    header: list[str]
    targets: list[str | None]  # per column index
    columns: dict[str, str]
    unknown: list[str]
    ignored: list[str]
    defined: list[tuple[str, str]] = field(default_factory=list)
    shadowed: list[tuple[str, str, str]] = field(default_factory=list)


def _layout(
    header: list[str],
    mapping: dict[str, str],
    match: Sequence[str],
    defined: Sequence[tuple[str, str]] = (),
) -> _Layout:
    header = [h.strip() for h in header]
    targets: list[str | None] = [None] * len(header)
    explicit: set[int] = set()
    exact = {h: i for i, h in reversed(list(enumerate(header)))}
    folded = {header_key(h): i for i, h in reversed(list(enumerate(header)))}
    for column, target in mapping.items():
        index = exact.get(column.strip(), folded.get(header_key(column), -1))
        if index < 0:
            raise ImportRefused(
                f"--map names a column {column!r} that the file does not have; "
                f"its columns are: {', '.join(h for h in header if h)}."
            )
        targets[index] = target
        explicit.add(index)
    recognised = [recognise(h) for h in header]
    has_family = "family_name" in recognised or "family_name" in mapping.values()
    fields_by_header = _defined_headers(defined)
    by_field: list[tuple[str, str]] = []
    shadowed: list[tuple[str, str, str]] = []
    for index, known in enumerate(recognised):
        if index in explicit:
            continue
        if header_key(header[index]) == _TEN:
            known = "first_name" if has_family else "name"
        field_named = fields_by_header.get(header_key(header[index]))
        if field_named is not None:
            if known is None or known.startswith(CUSTOM_PREFIX):
                known = field_named.target
                by_field.append((header[index], field_named.name))
            else:
                shadowed.append((header[index], known, field_named.name))
        if known is not None:
            targets[index] = known
    _refuse_duplicate_headers(header, targets)
    columns: dict[str, str] = {}
    unknown: list[str] = []
    ignored: list[str] = []
    for index, name in enumerate(header):
        mapped = targets[index]
        if mapped == IGNORE:
            ignored.append(name)
            targets[index] = None
        elif mapped is not None:
            columns[name] = mapped
        elif name:
            unknown.append(name)
    present = [f for f in match if f in columns.values()]
    if not present:
        wanted = ", ".join(match)
        raise MissingIdentifier(
            f"Missing identifier column: the file has no {wanted} column. Map one with "
            f'--map COLUMN=FIELD (e.g. --map "Mã KH=external_id"); the file\'s columns are: '
            f"{', '.join(h for h in header if h) or 'none'}.",
            unknown,
        )
    return _Layout(header, targets, columns, unknown, ignored, by_field, shadowed)


def _refuse_duplicate_headers(header: list[str], targets: list[str | None]) -> None:
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        if not name or targets[index] is None:
            continue
        if name in seen:
            raise ImportRefused(
                f"The header {name!r} appears twice (columns {seen[name] + 1} and {index + 1}); "
                "rename one of them."
            )
        seen[name] = index


# ---------------------------------------------------------------------------------------------
# Values


_DAY_FIRST = re.compile(
    r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})(?:[ T,]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?"
)


def parse_when(raw: str | date, zone: tzinfo, now: datetime) -> datetime:
    """A date or a date and time from a file, in UTC. Raises ValueError with a reason."""
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, date):
        moment = datetime.combine(raw, time())
    else:
        moment = _when_from_text(raw.strip())
    if moment.year < 1900:  # as written: 1900-01-01 in Saigon is still 1899 in UTC
        raise ValueError(f"{_shown(raw)} is before 1900")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    moment = moment.astimezone(UTC)
    if moment > now + CLOCK_SKEW:
        raise ValueError(f"{_shown(raw)} is in the future")
    return moment


def _when_from_text(text: str) -> datetime:
    if len(text) >= 10 and text[4] == "-":
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    else:
        matched = _DAY_FIRST.fullmatch(text)
        if matched is not None:
            day, month, year, hour, minute, second = matched.groups()
            if int(month) > 12 and int(day) <= 12:
                raise ValueError(
                    f"{text!r}: dates are read day first (DD/MM/YYYY) and {month} is no month"
                )
            try:
                return datetime(
                    int(year),
                    int(month),
                    int(day),
                    int(hour or 0),
                    int(minute or 0),
                    int(second or 0),
                )
            except ValueError:
                pass
    raise ValueError(f"{text!r} is not a date (write YYYY-MM-DD or DD/MM/YYYY)")


def _shown(raw: str | date) -> str:
    return repr(raw) if isinstance(raw, str) else raw.isoformat()


def split_tags(raw: str) -> list[str]:
    parts = raw.split(";") if ";" in raw else raw.split(",")
    seen: dict[str, str] = {}
    for part in parts:
        tag = clean_name(part)
        if tag and tag.casefold() not in seen:
            seen[tag.casefold()] = tag
    return list(seen.values())


class PhoneReader:
    """valid_phone with the default region, fast for files of a million numbers.

    phonenumbers takes ~25 µs a number. For plain numbers (digits, an optional leading `+`, and
    single spaces, dots or dashes between digits) of the default region's country, its result is
    decided by whether there is a `+`, the first few digits and the count of digits, provided the
    region's metadata is simple: its country code is its alone, its national prefix is plain
    digits with no transform rule, and every number pattern (the general one and each type's) is
    a prefix of at most `_PREFIX_MAX` digits followed by a run of any digits — true for VN. Such
    numbers are answered from a cache of what phonenumbers said for the same (plus, leading
    digits, length), the leading digits being those that say how the number is written (with
    `+`, the international prefix, the national prefix or none) and then those that decide its
    validity; anything else goes to phonenumbers itself. tests/unit/test_imports.py checks the
    two agree on generated numbers."""

    _PLAIN = re.compile(r"\+?\d+(?:[ .\-]\d+)*")
    _PREFIX_MAX = 6

    def __init__(self, region: str) -> None:
        self.region = region.upper()
        self._cache: dict[tuple[bool, str, int], int | None] = {}
        meta = PhoneMetadata.metadata_for_region(self.region)
        self._cc = self._idd = self._prefix = ""
        self._width = 0  # leading digits of the national number deciding its validity; 0: slow
        if meta is None or meta.country_code is None:
            return
        if len(COUNTRY_CODE_TO_REGION_CODE.get(meta.country_code, ())) != 1:
            return
        prefix = meta.national_prefix_for_parsing or ""
        idd = meta.international_prefix or ""
        simple = (prefix.isdigit() or not prefix) and meta.national_prefix_transform_rule is None
        widths = [_prefix_width(pattern) for pattern in _number_patterns(meta)]
        if simple and idd.isdigit() and widths and None not in widths:
            self._cc, self._idd, self._prefix = str(meta.country_code), idd, prefix
            self._width = max(1, *(w for w in widths if w is not None))

    def __call__(self, raw: str) -> str | None:
        text = raw.strip()
        if not self._width or self._PLAIN.fullmatch(text) is None:
            return valid_phone(text, self.region)
        plus = text[0] == "+"
        digits = text.replace(" ", "").replace("-", "").replace(".", "")
        cc, idd, prefix, width = self._cc, self._idd, self._prefix, self._width
        if plus:
            digits = digits[1:]
            if not digits.startswith(cc):
                return valid_phone(text, self.region)
            depth = len(cc) + width
        elif digits.startswith(idd):
            if not digits.startswith(idd + cc):
                return valid_phone(text, self.region)
            depth = len(idd) + len(cc) + width
        elif prefix and digits.startswith(prefix):
            depth = len(prefix) + width
        elif digits.startswith(cc):  # phonenumbers drops it if what follows reads better
            depth = len(cc) + len(prefix) + width
        else:
            depth = max(len(cc), width)
        key = (plus, digits[:depth], len(digits))
        strip = self._cache.get(key, _MISSING)
        if strip is None:
            return None
        if isinstance(strip, int):
            return "+" + self._cc + digits[strip:]
        result = valid_phone(text, self.region)
        if result is None:
            self._cache[key] = None
        elif result.startswith("+" + self._cc):
            national = result[1 + len(self._cc) :]
            if digits.endswith(national):
                self._cache[key] = len(digits) - len(national)
        return result


def _number_patterns(meta: PhoneMetadata) -> list[str]:
    descriptions = [meta.general_desc, *(getattr(meta, kind) for kind in _NUMBER_TYPES)]
    return [d.national_number_pattern for d in descriptions if d and d.national_number_pattern]


_NUMBER_TYPES: Final = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "personal_number",
    "voip",
    "pager",
    "uan",
    "voicemail",
)
_ANY_DIGIT: Final = [
    (regex_constants.IN, [(regex_constants.CATEGORY, regex_constants.CATEGORY_DIGIT)])
]


def _prefix_width(pattern: str) -> int | None:
    """The most leading digits that decide whether a number matches `pattern`, given its
    length, when every way through the pattern is a prefix of at most PhoneReader._PREFIX_MAX
    digits followed by a run of any digits (`\\d{6}`); else None."""
    try:
        parsed = regex_parser.parse(pattern)
    except re.error:
        return None
    width = _decided_by(parsed.state, list(parsed.data))
    return width if width is not None and width <= PhoneReader._PREFIX_MAX else None


def _decided_by(state: Any, items: list[Any]) -> int | None:
    if not items:
        return 0
    *head, (kind, value) = items
    if kind is regex_constants.MAX_REPEAT and list(value[2]) == _ANY_DIGIT:
        return _width(state, head)
    if kind is regex_constants.SUBPATTERN:
        return _decided_by(state, [*head, *value[3]])
    if kind is regex_constants.BRANCH:
        start = _width(state, head)
        ways = [_decided_by(state, list(way)) for way in value[1]]
        if start is None or None in ways:
            return None
        return start + max(w for w in ways if w is not None)
    return _width(state, items)


def _width(state: Any, items: list[Any]) -> int | None:
    high: int = regex_parser.SubPattern(state, items).getwidth()[1]
    return high if high <= PhoneReader._PREFIX_MAX else None


# ---------------------------------------------------------------------------------------------
# Reading


class _Text:
    """Physical lines of a text stream for csv.reader, refusing binary junk and endless lines."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.encoding = ""
        self.consumed = 0  # characters read so far: a row of fewer has no cell over CELL_MAX
        # A NUL in the lines read since the reader last looked: that record rejects its row
        # (a stray byte in a text file) where the file as a whole reads fine.
        self.damaged = False

    def __iter__(self) -> Iterator[str]:
        readline = self.stream.readline
        try:
            while line := readline(LINE_LIMIT):
                if len(line) >= LINE_LIMIT and not line.endswith(("\n", "\r")):
                    raise ImportRefused(
                        f"The file has a line longer than {LINE_LIMIT:,} characters; "
                        "is it really a table of contacts?"
                    )
                if "\x00" in line:
                    self.damaged = True
                self.consumed += len(line)
                yield line
        except UnicodeDecodeError as error:
            raise _undecodable(self.encoding, error.start) from None


def open_text(data: bytes | IO[bytes]) -> tuple[str, IO[str]]:
    """The encoding and a text stream (undecoded lazily) of a CSV file."""
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        encoding = _text_encoding(raw)
        stream: IO[bytes] = io.BytesIO(raw)
    else:
        head = data.read(SAMPLE_SIZE)
        data.seek(0)
        encoding = detect_encoding(head)
        if encoding == "xlsx":
            raise ImportRefused("This is an XLSX workbook, not a text file.")
        stream = data
    return encoding, io.TextIOWrapper(stream, encoding=encoding, newline="")


def _sample_lines(text: IO[str]) -> str:
    sample = text.read(SAMPLE_SIZE)
    text.seek(0)
    if len(sample) == SAMPLE_SIZE:
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        if cut > 0:
            sample = sample[:cut]
    return sample


def sniff_delimiter(sample: str) -> str:
    """The delimiter among `,` `;` tab `|` that splits the sample's lines into a table."""
    try:
        guess = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        guess = ","
    best: tuple[float, int, bool, int] | None = None
    choice = ""
    for delimiter in sorted(DELIMITERS, key=lambda d: d != guess):
        records = [r for r in _records(sample, delimiter, 50) if any(c.strip() for c in r)]
        if not records:
            raise ImportRefused("The file has no header row.")
        width = len(records[0])
        if width < 2:
            continue
        body = records[1:]
        # Rows may stop short (some tools drop trailing empty cells) or run long (rejected
        # later, row by row) but must not be one lump.
        fits = sum(len(r) > 1 for r in body) / len(body) if body else 1.0
        exact = sum(len(r) == width for r in body)
        score = (fits, exact, delimiter == guess, width)
        if fits >= 0.8 and (best is None or score > best):
            best, choice = score, delimiter
    if choice:
        return choice
    first = next((r for r in _records(sample, ",", 50) if any(c.strip() for c in r)), [])
    lines = sample.splitlines()[1:50]
    for delimiter in DELIMITERS:
        if len(first) < 2 and lines and sum(delimiter in line for line in lines) > len(lines) / 2:
            shown = {"\t": "tab"}.get(delimiter, delimiter)
            raise ImportRefused(
                f"The header is a single column but the rows contain {shown!r}: wrong delimiter? "
                "Use commas, semicolons, tabs or | consistently, header included."
            )
    if len(first) < 2:
        return ","  # a one-column file (phones only, say)
    raise ImportRefused(
        "The rows do not have as many columns as the header: wrong delimiter, or unquoted "
        "commas inside values?"
    )


def _records(sample: str, delimiter: str, limit: int) -> list[list[str]]:
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
    out: list[list[str]] = []
    try:
        for record in reader:
            out.append(record)
            if len(out) >= limit:
                break
    except csv.Error:
        pass
    return out


def _csv_records(lines: _Text, delimiter: str, limits: FileLimits) -> Iterator[list[str]]:
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        yield from islice(reader, limits.rows)
        if next(reader, None) is not None:
            raise limits.too_many_rows()
    except csv.Error as error:
        if "field larger than field limit" in str(error):
            raise ImportRefused(
                f"Line {reader.line_num} has a cell longer than {FIELD_LIMIT:,} characters; "
                "is it really a table of contacts?"
            ) from None
        raise ImportRefused(f"Line {reader.line_num} is not valid CSV: {error}.") from None


def parse(
    data: bytes | IO[bytes],
    *,
    mapping: dict[str, str] | None = None,
    default_region: str = "VN",
    zone: tzinfo = UTC,
    now: datetime | None = None,
    match: Sequence[str] = IDENTIFIERS,
    defined: Sequence[tuple[str, str]] = (),
    limits: FileLimits = DEFAULT_LIMITS,
) -> ParsedFile:
    """Recognise a CSV or XLSX file (bytes, or a seekable binary stream) and return its rows lazily.

    `mapping` comes from parse_map (`--map`) or the chat's mapping buttons and overrides header
    recognition. `defined` lists the custom fields as (key, name): a header naming one is read
    as that field, unless it is a built-in header. `match` names the identifier fields the
    import matches on (`--match`); the file must have a column for at least one of them. `now`
    (aware; default: the current time) bounds backdated dates. Raises ImportRefused for a file
    that is no import, or one past `limits`."""
    now = now or datetime.now(UTC)
    csv.field_size_limit(FIELD_LIMIT)
    records: Iterator[list[str]]
    lines: _Text | None = None
    head = data[:SAMPLE_SIZE] if isinstance(data, bytes) else _peek(data)
    sheet: Sheet | None = None
    if detect_encoding(bytes(head)) == "xlsx":
        fmt, encoding, delimiter = "xlsx", None, None
        sheet = open_sheet(data, limits)
        records = sheet.records
    else:
        fmt = "csv"
        encoding, text = open_text(data)
        try:
            sample = _sample_lines(text)
        except UnicodeDecodeError as error:
            raise _undecodable(encoding, error.start) from None
        _refuse_junk(sample)
        if not sample.strip():
            raise ImportRefused("The file is empty.")
        delimiter = sniff_delimiter(sample)
        lines = _Text(text)
        lines.encoding = encoding
        records = _csv_records(lines, delimiter, limits)
    header_row, header = _header(records)
    layout = _layout(header, dict(mapping or {}), match, defined)
    errors: list[RowError] = []
    reader = _RowReader(
        layout,
        PhoneReader(default_region),
        zone,
        now,
        errors,
    )
    return ParsedFile(
        format=fmt,
        encoding=encoding,
        delimiter=delimiter,
        header=layout.header,
        columns=layout.columns,
        unknown_columns=layout.unknown,
        ignored_columns=layout.ignored,
        rows=reader.read(records, header_row + 1, lines),
        errors=errors,
        field_columns=layout.defined,
        shadowed_columns=layout.shadowed,
        sheet=sheet.name if sheet else None,
        other_sheets=sheet.others if sheet else [],
    )


def _peek(stream: IO[bytes]) -> bytes:
    head = stream.read(SAMPLE_SIZE)
    stream.seek(0)
    return head


def _header(records: Iterator[list[str]]) -> tuple[int, list[str]]:
    for number, record in enumerate(records, start=1):
        if any(c.strip() for c in record):
            return number, record
    raise ImportRefused("The file is empty.")


_CACHE_MAX = 65_536  # entries of each per-file cache of converted cells (stages, owners, dates…)


def _clean(text: str) -> str:
    """domain.text.clean_name, faster: str.split() splits on the same whitespace as `\\s+`."""
    return " ".join(unicodedata.normalize("NFC", refuse_control_characters(text)).split())


def _email(raw: str) -> str:
    address = raw.strip().lower()
    if not is_email(address):
        raise ValueError(f"{address!r} is not an email address")
    return address


class _RowReader:
    """Turns records into ImportRows. A fast path handles the common row (every cell fine) with
    per-file caches of repeated cells; any row it does not accept goes through the thorough path,
    which collects every problem of the row."""

    def __init__(
        self,
        layout: _Layout,
        phones: PhoneReader,
        zone: tzinfo,
        now: datetime,
        errors: list[RowError],
    ) -> None:
        self.header = layout.header
        self.width = len(layout.header)
        self.phones = phones
        self.zone = zone
        self.now = now
        self.errors = errors
        by_field: dict[str, list[int]] = {}
        for index, target in enumerate(layout.targets):
            if target is not None:
                by_field.setdefault(target, []).append(index)
        self.by_field = by_field
        self.imported = {index for indexes in by_field.values() for index in indexes}
        # Each field reads one slot of the prepared cells: its column, or, for a field of several
        # columns, a slot appended with the first non-empty of them; absent fields read the empty
        # slot right after the header's width.
        self.merged = [indexes for indexes in by_field.values() if len(indexes) > 1]
        slots: dict[str, int] = {}
        extra = self.width + 1
        for name, indexes in by_field.items():
            if len(indexes) == 1:
                slots[name] = indexes[0]
            else:
                slots[name] = extra
                extra += 1
        self.slots = slots
        self.absent = self.width
        self.name_parts = [by_field[p] for p in NAME_PARTS if p in by_field]
        self.custom = [(f[len(CUSTOM_PREFIX) :], slots[f]) for f in by_field if ":" in f]
        self.seen: dict[str, dict[str, int]] = {key: {} for key in IDENTIFIERS}
        self.caches: dict[str, dict[str, Any]] = {
            name: {} for name in ("company", "source", "owner", "stage", "value", "tags")
        }
        self.offsets: dict[str, timedelta] = {}
        self.latest = now + CLOCK_SKEW

    # -- the fast path

    def read(
        self, records: Iterable[list[str]], first: int, lines: _Text | None
    ) -> Iterator[ImportRow]:
        width, absent = self.width, self.absent
        slot = self.slots.get
        i_name, i_phone, i_email, i_ext = (
            slot(f, absent) for f in ("name", "phone", "email", "external_id")
        )
        i_company, i_source, i_owner, i_stage = (
            slot(f, absent) for f in ("company", "source", "owner", "stage")
        )
        i_value, i_created, i_changed, i_lost = (
            slot(f, absent) for f in ("value", "created_at", "stage_changed_at", "lost_reason")
        )
        i_tags = slot("tags", -1)
        merged, name_parts, custom = self.merged, self.name_parts, self.custom
        phones = self.phones
        seen_phone, seen_email, seen_ext = (self.seen[k] for k in IDENTIFIERS)
        short = self._short_text
        when = self._when
        value_of = self._value
        tags_of = self._tags
        caches = self.caches
        c_company, c_source, c_owner, c_stage, c_value, c_tags = (
            caches[name] for name in ("company", "source", "owner", "stage", "value", "tags")
        )
        cell_max = CELL_MAX
        consumed = lines.consumed if lines is not None else 0
        if lines is not None:
            lines.damaged = False  # the header's
        for number, cells in enumerate(records, start=first):
            if lines is not None and lines.damaged:
                lines.damaged = False
                self._reject(number, [(None, "has a NUL character: is the line damaged?")], cells)
                continue
            if not any(cells):
                continue
            count = len(cells)
            if count != width:
                if count > width:
                    if any(c.strip() for c in cells[width:]):
                        self._reject(
                            number,
                            [(None, f"has {count} cells but the header has {width} columns")],
                            cells,
                        )
                        continue
                    del cells[width:]
                else:
                    cells.extend([""] * (width - count))
            if lines is None and any(type(cell) is Uncalculated for cell in cells):
                uncalculated = self._uncalculated(cells)
                if uncalculated:
                    self._reject(number, uncalculated, cells)
                    continue
            original = cells
            cells = [*cells, ""]
            for indexes in merged:
                cells.append(next((cells[i] for i in indexes if cells[i].strip()), ""))
            row = None
            if lines is None:
                fits = max(map(len, cells)) <= cell_max
            else:
                fits = lines.consumed - consumed <= cell_max or max(map(len, cells)) <= cell_max
                consumed = lines.consumed
            if fits:
                try:
                    raw = cells[i_phone]
                    phone = phones(raw) if raw else None
                    raw = cells[i_email]
                    email = _email(raw) if raw else None
                    external = _clean(cells[i_ext]) or None
                    if phone or email or external:
                        raw = cells[i_name]
                        name = short(raw, "name") if raw else None
                        raw = cells[i_company]
                        company = c_company.get(raw) or (short(raw, "company") if raw else None)
                        raw = cells[i_source]
                        source = c_source.get(raw) or (short(raw, "source") if raw else None)
                        raw = cells[i_owner]
                        owner = c_owner.get(raw) or (short(raw, "owner") if raw else None)
                        raw = cells[i_stage]
                        stage = c_stage.get(raw) or (short(raw, "stage") if raw else None)
                        raw = cells[i_value]
                        value = c_value.get(raw) or (value_of(raw) if raw else None)
                        if i_tags < 0:
                            tags = None
                        else:
                            raw = cells[i_tags]
                            tags = list(c_tags.get(raw) or (tags_of(raw) if raw else ()))
                        raw = cells[i_created]
                        created = when(raw) if raw else None
                        raw = cells[i_changed]
                        changed = when(raw) if raw else None
                        raw = cells[i_lost]
                        lost = short(raw, "lost_reason") if raw else None
                        row = ImportRow(
                            number,
                            name,
                            phone,
                            email,
                            external,
                            company,
                            source,
                            owner,
                            stage,
                            value,
                            tags,
                            created,
                            changed,
                            lost,
                        )
                        if name_parts or custom:
                            self._name_and_custom(row, cells)
                        if (
                            (cells[i_phone] and phone is None)
                            or len(external or "") > 200
                            or (
                                row.stage_changed_at is not None
                                and row.created_at is not None
                                and row.stage_changed_at < row.created_at
                            )
                            or (
                                (phone is not None and phone in seen_phone)
                                or (email is not None and email in seen_email)
                                or (external is not None and external in seen_ext)
                            )
                        ):
                            row = None
                except ValueError:
                    row = None
            if row is None:
                row = self._thorough(number, cells, original)
                if row is None:
                    continue
            if row.phone is not None:
                seen_phone[row.phone] = number
            if row.email is not None:
                seen_email[row.email] = number
            if row.external_id is not None:
                seen_ext[row.external_id] = number
            yield row

    def _uncalculated(self, cells: list[str]) -> list[tuple[str | None, str]]:
        """Problems of formula cells saved without a value, in the columns imported; a column
        not imported is read as empty (it is ignored anyway)."""
        problems: list[tuple[str | None, str]] = []
        for index, cell in enumerate(cells):
            if type(cell) is not Uncalculated:
                continue
            if index in self.imported:
                problems.append(
                    (
                        self.header[index],
                        f"the formula {cell} has no saved value: open the file in Excel or "
                        "LibreOffice, save it, and import it again",
                    )
                )
            else:
                cells[index] = ""
        return problems

    @staticmethod
    def _keep(cache: dict[str, Any], raw: str, value: Any) -> None:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[raw] = value

    def _short_text(self, raw: str, name: str) -> str | None:
        """A name, company, source, owner, stage or lost reason; None when empty. Raises
        ValueError for one that is too long."""
        cleaned = _clean(raw)
        limit = _TEXT_LIMITS[name]
        if len(cleaned) > limit:
            raise ValueError(f"longer than {limit} characters")
        if not cleaned:
            return None
        cache = self.caches.get(name)
        if cache is not None:  # names and lost reasons hardly repeat: not cached
            self._keep(cache, raw, cleaned)
        return cleaned

    def _value(self, raw: str) -> Decimal | None:
        if raw.isspace():
            return None
        value = parse_value(raw)
        self._keep(self.caches["value"], raw, value)
        return value

    def _tags(self, raw: str) -> list[str]:
        tags = split_tags(raw)
        self._keep(self.caches["tags"], raw, tags)
        return tags

    def _when(self, raw: str) -> datetime | None:
        """parse_when, with the zone's UTC offset remembered per day (days on which the offset
        does not change) so that a million timestamps need not each consult the zone."""
        if raw.isspace():
            return None
        day = raw[:10]
        offset = self.offsets.get(day)
        if offset is not None and raw[4:5] == "-":
            try:
                moment = datetime.fromisoformat(raw)
            except ValueError:
                moment = None
            if moment is not None and moment.tzinfo is None:
                moment -= offset
                moment = datetime.combine(moment, moment.time(), UTC)  # replace() is slower
                if moment > self.latest:
                    raise ValueError(f"{raw!r} is in the future")
                return moment
        moment = parse_when(raw, self.zone, self.now)
        if raw[4:5] == "-" and len(self.offsets) < _CACHE_MAX:
            local = moment.astimezone(self.zone)
            start = datetime.combine(local.date(), time()).replace(tzinfo=self.zone)
            end = datetime.combine(local.date(), time.max).replace(tzinfo=self.zone)
            if start.utcoffset() == end.utcoffset() and local.year >= 1900:
                self.offsets[day] = start.utcoffset() or timedelta(0)
        return moment

    def _name_and_custom(self, row: ImportRow, cells: list[str]) -> None:
        if row.name is None and self.name_parts:
            parts = (_clean(cells[i]) for indexes in self.name_parts for i in indexes)
            joined = " ".join(p for p in parts if p)
            if len(joined) > NAME_MAX:
                raise ValueError("the name is too long")
            row.name = joined or None
        for key, index in self.custom:
            content = _clean(cells[index]) if cells[index] else ""
            if content:
                row.custom_fields[key] = content

    # -- the thorough path: every problem of the row, or None for a row of blank cells

    def _thorough(self, number: int, cells: list[str], original: list[str]) -> ImportRow | None:
        problems: list[tuple[str | None, str]] = []
        long = [i for i, cell in enumerate(original) if len(cell) > CELL_MAX]
        if long:
            for index in long:
                problems.append(
                    (self.header[index], f"the cell is longer than {CELL_MAX:,} characters")
                )
            self._reject(number, problems, original)
            return None
        if not any(cell.strip() for cell in original):
            return None  # cells of spaces only: a blank line
        row = ImportRow(number)
        converters: dict[str, Callable[[str], object]] = {
            "phone": self._phone,
            "email": _email,
            "external_id": self._external,
            "value": self._value,
            "created_at": self._when,
            "stage_changed_at": self._when,
        }
        for name, indexes in self.by_field.items():
            if name in NAME_PARTS or name == "tags" or ":" in name:
                continue
            index = self.slots[name]
            source = next((i for i in indexes if cells[i].strip()), indexes[0])
            convert = converters.get(name)
            try:
                if convert is None:
                    setattr(row, name, self._short_text(cells[index], name))
                elif cells[index].strip():
                    setattr(row, name, convert(cells[index]))
            except ValueError as error:
                problems.append((self.header[source], str(error)))
        try:
            if "tags" in self.slots:
                row.tags = self._tags(cells[self.slots["tags"]])
            self._name_and_custom(row, cells)
        except ValueError as error:
            problems.append((None, str(error)))
        if not problems and row.phone is None and row.email is None and row.external_id is None:
            problems.append((None, "no phone, email or external id to find the contact by"))
        if (
            row.created_at is not None
            and row.stage_changed_at is not None
            and row.stage_changed_at < row.created_at
        ):
            problems.append(
                (
                    self._column_of("stage_changed_at"),
                    "the stage changed before the contact was created",
                )
            )
        for key in IDENTIFIERS:
            found = getattr(row, key)
            if found is not None:
                earlier = self.seen[key].get(found)
                if earlier is not None:
                    problems.append(
                        (self._column_of(key), f"the same {_label(key)} as row {earlier}")
                    )
        if problems:
            self._reject(number, problems, original)
            return None
        return row

    def _phone(self, raw: str) -> str:
        found = self.phones(raw)
        if found is None:
            raise ValueError(phone_refusal(raw, self.phones.region))
        return found

    @staticmethod
    def _external(raw: str) -> str:
        cleaned = _clean(raw)
        if len(cleaned) > 200:
            raise ValueError("longer than 200 characters")
        return cleaned

    def _column_of(self, name: str) -> str | None:
        indexes = self.by_field.get(name)
        return self.header[indexes[0]] if indexes else None

    def _reject(
        self, number: int, problems: list[tuple[str | None, str]], cells: list[str]
    ) -> None:
        keep = len(self.errors) < ERRORS_WITH_VALUES
        values = tuple(c[:CELL_MAX] for c in cells) if keep else ()
        for column, reason in problems:
            self.errors.append(RowError(number, column, reason, values))


_TEXT_LIMITS: Final = {
    "name": NAME_MAX,
    "company": NAME_MAX,
    "source": NAME_MAX,
    "owner": NAME_MAX,
    "stage": 64,
    "lost_reason": TEXT_MAX,
}


def _label(key: str) -> str:
    return key.replace("_", " ")


# ---------------------------------------------------------------------------------------------
# Error report


def error_report(errors: Sequence[RowError], header: Sequence[str] | None = None) -> bytes:
    """The rejected rows as CSV (UTF-8 with BOM, so Excel reads Vietnamese): row, column, reason,
    then the row's original cells under the file's own headers when they were kept."""
    out = io.StringIO()
    writer = csv.writer(out)
    extra = list(header or [])
    writer.writerow(["row", "column", "reason", *extra])
    for error in errors:
        writer.writerow([error.row, error.column or "", error.reason, *error.values])
    return codecs.BOM_UTF8 + out.getvalue().encode("utf-8")
