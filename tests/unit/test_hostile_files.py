"""Files people send that tools wrote badly or someone wrote to hurt (issue 17): each is read in
full, or its bad rows are rejected with a reason, or it is refused whole with one line — never
read as fewer rows without a word, never with memory growing with what the file unpacks to.
Every file is built here by code."""

from __future__ import annotations

import io
import re
import tracemalloc
import zipfile
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.errors import ImportRefused
from domain.imports import ImportRow, ParsedFile, parse
from domain.workbooks import FileLimits
from tests.hostile import PEOPLE, declaring, rewritten, workbook

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")


def read(data: bytes, limits: FileLimits | None = None) -> tuple[ParsedFile, list[ImportRow]]:
    parsed = parse(data, default_region="VN", zone=SAIGON, now=NOW, limits=limits or FileLimits())
    return parsed, list(parsed.rows)


@pytest.mark.parametrize(
    "dimension",
    [
        '<dimension ref="A1:A1"/>',  # stale: one cell
        '<dimension ref="A1:B2"/>',  # stale: the header and one row
        "",  # none at all
    ],
)
def test_a_workbook_is_read_whatever_its_dimension_says(dimension: str) -> None:
    stale = rewritten(workbook(PEOPLE), lambda xml: re.sub(r"<dimension [^>]*/>", dimension, xml))
    parsed, rows = read(stale)
    assert [r.name for r in rows] == ["Nguyễn Văn An", "Trần Thị Bình", "Lê Cường"]
    assert parsed.errors == []


def test_formula_cells_are_read_by_their_saved_value_and_without_one_reject_their_row() -> None:
    book = workbook(
        [
            ["Phone", "Name", "Value", "Notes"],
            ["0912345678", "An", "=SUM(1,2)", ""],  # saved with its value below
            ["0912345679", "Bình", "=SUM(2,2)", ""],  # saved without: a script wrote it
            ["0912345670", "Cường", 5, "=A4&B4"],  # a formula in a column not imported
        ]
    )
    saved = rewritten(book, lambda xml: xml.replace("(1,2)</f><v />", "(1,2)</f><v>3</v>"))
    parsed, rows = read(saved)
    assert [(r.name, r.value) for r in rows] == [("An", 3), ("Cường", 5)]
    [error] = parsed.errors
    assert (error.row, error.column) == (3, "Value")
    assert "=SUM(2,2) has no saved value" in error.reason
    assert parsed.unknown_columns == ["Notes"]


def test_a_workbook_of_several_sheets_says_which_it_read() -> None:
    parsed, rows = read(workbook(PEOPLE, "Đã mất", "Notes"))
    assert len(rows) == 3
    assert (parsed.sheet, parsed.other_sheets) == ("Khách hàng", ["Đã mất", "Notes"])


def test_a_workbook_with_more_rows_than_allowed_is_refused_before_a_row_is_read() -> None:
    rows = [["Phone"], *([f"09123456{n:02}"] for n in range(99))]
    with pytest.raises(ImportRefused, match=r"more than 99 rows, the most .* split it"):
        read(workbook(rows), FileLimits(rows=99))
    assert len(read(workbook(rows), FileLimits(rows=100))[1]) == 99


def test_a_row_numbered_past_the_limit_is_refused_even_where_the_sheet_has_few() -> None:
    far = rewritten(workbook(PEOPLE), lambda xml: xml.replace('<row r="4">', '<row r="5000">'))
    with pytest.raises(ImportRefused, match="more than 1,000 rows"):
        read(far, FileLimits(rows=1000))


def test_a_workbook_that_unpacks_past_the_limit_is_refused_from_its_directory() -> None:
    with pytest.raises(ImportRefused, match=r"unpacks to .* MB, more than the 1 MB"):
        read(workbook(PEOPLE * 4000), FileLimits(unpacked=1 << 20))


def test_a_workbook_declaring_a_huge_sheet_is_refused_before_it_is_inflated() -> None:
    with pytest.raises(ImportRefused, match=r"unpacks to 3,072 MB, more than the 1,024 MB"):
        read(declaring(workbook(PEOPLE), 3 << 30))


def test_a_zip_bomb_of_rows_is_refused_with_flat_memory() -> None:
    """A few megabytes that inflate to a sheet of 1.2 million rows: refused on the count of its
    rows, reading the sheet a megabyte at a time."""
    row = b'<row r="%d"><c r="A%d"><v>1</v></c></row>'
    rows = b"".join(row % (n, n) for n in range(2, 1_200_000))
    bomb = rewritten(
        workbook([["Phone"]]),
        lambda xml: xml.replace("</row>", "</row>" + rows.decode(), 1),
    )
    assert len(bomb) < 8 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ImportRefused, match=r"more than 1,048,576 rows, the most .* split it"):
            read(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak:,} bytes at most while refusing"


def test_a_csv_with_more_rows_than_allowed_is_refused() -> None:
    lines = "Phone\n" + "".join(f"09123456{n:02}\n" for n in range(50))
    with pytest.raises(ImportRefused, match="more than 50 rows"):
        read(lines.encode(), FileLimits(rows=50))


def test_a_nul_byte_rejects_its_row_not_the_file() -> None:
    parsed, rows = read(b"Phone,Name\n0912345678,An\n0912345679,B\x00nh\n0912345670,C\n")
    assert [r.name for r in rows] == ["An", "C"]
    [error] = parsed.errors
    assert error.row == 3
    assert "NUL" in error.reason


def test_a_control_character_in_any_text_cell_rejects_its_row() -> None:
    parsed, rows = read(
        "Phone,Name,Company,Email\n"
        "0912345678,An\x1b[31m,ACME,\n"
        "0912345679,Bình,Đại\x7fPhát,\n"
        "0912345670,Cường,,c\x01@x.vn\n"
        "0912345671,Dũng,Hoà Bình,d@x.vn\n".encode()
    )
    assert [r.name for r in rows] == ["Dũng"]
    assert [(e.row, e.column) for e in parsed.errors] == [(2, "Name"), (3, "Company"), (4, "Email")]
    assert "control character (U+001B)" in parsed.errors[0].reason


@pytest.mark.parametrize(
    "junk",
    [
        b"PK\x03\x04" + b"\x00" * 100,  # a ZIP's start and nothing else
        b"PK\x03\x04" + bytes(range(256)) * 10,
    ],
)
def test_a_broken_zip_is_refused_in_one_line(junk: bytes) -> None:
    with pytest.raises(ImportRefused) as refused:
        read(junk)
    assert "\n" not in str(refused.value)


def test_a_zip_without_a_sheet_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
    with pytest.raises(ImportRefused, match=r"(?i)workbook"):
        read(out.getvalue())


# --- fuzzing: whatever the bytes, rows, row rejections or one refusal --------------------------


def _ends_well(data: bytes) -> None:
    try:
        parsed, rows = read(data, FileLimits(rows=10_000, unpacked=16 << 20))
    except ImportRefused as refused:
        reason = str(refused)
        assert reason.strip()
        return
    assert all(isinstance(row, ImportRow) for row in rows)
    assert all(error.reason for error in parsed.errors)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_any_bytes_end_in_rows_rejections_or_a_refusal(data: bytes) -> None:
    _ends_well(data)


csv_cells = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(csv_cells, min_size=1, max_size=6), min_size=1, max_size=20),
    st.sampled_from([",", ";", "\t", "|"]),
    st.sampled_from(["utf-8", "utf-16", "utf-8-sig"]),
)
def test_any_table_of_text_ends_in_rows_rejections_or_a_refusal(
    table: list[list[str]], delimiter: str, encoding: str
) -> None:
    text = "\n".join(delimiter.join(["Phone", "Name"][: len(row)] or row) for row in table[:1])
    text += "\n" + "\n".join(delimiter.join(row) for row in table[1:])
    _ends_well(text.encode(encoding, "surrogatepass"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=4000))
def test_a_workbook_with_bytes_changed_ends_in_rows_rejections_or_a_refusal(
    noise: bytes, at: int
) -> None:
    book = bytearray(workbook(PEOPLE))
    at %= len(book)
    book[at : at + len(noise)] = noise
    _ends_well(bytes(book))
