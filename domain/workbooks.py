"""An XLSX workbook's first sheet as rows of text cells, for an import.

Read whatever the sheet's `<dimension>` tag says (many tools write a stale one, and openpyxl's
read-only mode trusts it), formula cells by the value the spreadsheet saved with them, and
within bounds: the unpacked size of the workbook and the number of rows are checked before a
row is read, with no more memory than a few rows'."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import IO, Any, Final

from domain.errors import ImportRefused

MAX_ROWS: Final = 1_048_576  # Excel's own limit
MAX_UNPACKED: Final = 1 << 30  # bytes: a full sheet of Excel's size with a dozen columns fits


@dataclass(frozen=True, slots=True)
class FileLimits:
    """How big a file a person may import: rows (the header included) and, for a workbook,
    bytes once unpacked."""

    rows: int = MAX_ROWS
    unpacked: int = MAX_UNPACKED

    def too_many_rows(self) -> ImportRefused:
        return ImportRefused(
            f"The file has more than {self.rows:,} rows, the most an import takes; split it "
            f"into files of at most {self.rows:,} rows (the header included) and import them "
            "one by one."
        )


DEFAULT_LIMITS: Final = FileLimits()


class Uncalculated(str):
    """A formula cell saved without its value (files written by scripts): its text is the
    formula. It rejects its row rather than be read as an empty cell."""

    __slots__ = ()


@dataclass(slots=True)
class Sheet:
    """The sheet an import reads, and the others it leaves."""

    name: str
    others: list[str] = field(default_factory=list)
    records: Iterator[list[str]] = field(default_factory=lambda: iter(()))


def open_sheet(data: bytes | IO[bytes], limits: FileLimits) -> Sheet:
    """The workbook's first sheet. Raises ImportRefused for what is no workbook, or one past
    `limits`."""
    from openpyxl import load_workbook  # imported here: only workbooks need it

    source: IO[bytes] = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    try:
        with zipfile.ZipFile(source) as archive:
            _refuse_oversized(archive, limits)
        source.seek(0)
        book = load_workbook(source, read_only=True, data_only=True)
    except ImportRefused:
        raise
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise ImportRefused(f"This ZIP file is not an Excel workbook ({error}).") from None
    except Exception as error:  # openpyxl raises its own InvalidFileException and others
        raise ImportRefused(f"This workbook cannot be read ({error}).") from None
    if not book.worksheets:
        book.close()
        raise ImportRefused("The workbook has no sheet.")
    first, *others = book.worksheets
    try:
        rows = _count_rows(book, first, limits)
    except BaseException:
        book.close()
        raise
    if rows > limits.rows:
        book.close()
        raise limits.too_many_rows()
    return Sheet(first.title, [sheet.title for sheet in others], _records(book, first, limits))


def _refuse_oversized(archive: zipfile.ZipFile, limits: FileLimits) -> None:
    # The sizes the archive declares bound what reading it inflates: zipfile stops at them.
    unpacked = sum(entry.file_size for entry in archive.infolist())
    if unpacked > limits.unpacked:
        raise ImportRefused(
            f"The workbook unpacks to {_megabytes(unpacked)}, more than the "
            f"{_megabytes(limits.unpacked)} an import takes; split it into smaller files "
            "(or save it as CSV) and import them one by one."
        )


def _megabytes(size: int) -> str:
    return f"{size / (1 << 20):,.0f} MB"


_SMALLEST_ROW: Final = len(b"<row/>")
_ROOT = re.compile(rb"<([A-Za-z_][\w.-]*:)?worksheet[\s>]")


def _count_rows(book: Any, sheet: Any, limits: FileLimits) -> int:
    """The sheet's `<row>` elements, counted in its XML as it inflates (byte counts: no object
    a row), up to a count past `limits.rows`: a sheet too long is refused before a row is parsed.
    A sheet whose XML cannot hold more rows than allowed is not read twice."""
    archive: zipfile.ZipFile = book._archive
    path: str = sheet._worksheet_path
    if archive.getinfo(path).file_size < _SMALLEST_ROW * limits.rows:
        return 0
    rows = 0
    tags: tuple[bytes, ...] = ()
    tail = b""
    with archive.open(path) as xml:
        while chunk := xml.read(1 << 20):
            text = tail + chunk
            if not tags:
                root = _ROOT.search(text)
                prefix = (root.group(1) or b"") if root else b""
                tags = tuple(b"<" + prefix + b"row" + end for end in (b" ", b">", b"/>"))
            tail = text[-16:]  # a tag starting there is counted with the next chunk
            rows += sum(text.count(tag) - tail.count(tag) for tag in tags)
            if rows > limits.rows:
                return rows
    return rows + sum(tail.count(tag) for tag in tags)


def _records(book: Any, sheet: Any, limits: FileLimits) -> Iterator[list[str]]:
    """The sheet's rows in order, a row missing from the XML as an empty one (so that row
    numbers are the spreadsheet's), each as far as its last cell."""
    from openpyxl.worksheet._reader import FORMULA_TAG, WorkSheetParser

    class Parser(WorkSheetParser):  # type: ignore[misc]
        def parse_cell(self, element: Any) -> dict[str, Any]:
            cell: dict[str, Any] = super().parse_cell(element)
            if cell["value"] is None:
                formula = element.find(FORMULA_TAG)
                if formula is not None:
                    cell["value"] = Uncalculated("=" + (formula.text or "…"))
            return cell

    try:
        with book._archive.open(sheet._worksheet_path) as xml:
            parser = Parser(
                xml,
                sheet._shared_strings,
                data_only=True,
                epoch=book.epoch,
                date_formats=book._date_formats,
                timedelta_formats=book._timedelta_formats,
            )
            expected = 1
            for number, cells in parser.parse():
                if number > limits.rows:
                    raise limits.too_many_rows()
                while expected < number:
                    expected += 1
                    yield []
                expected = number + 1
                row = [""] * (max((c["column"] for c in cells), default=0))
                for cell in cells:
                    row[cell["column"] - 1] = _text(cell["value"])
                yield row
    finally:
        book.close()


def _text(value: Any) -> str:
    """A cell as the text a CSV export would hold (dates in ISO, naive)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value  # an Uncalculated stays one
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return str(value)
