"""Reading import files (issue 5, DESIGN §4 "Import fields for --map"): encodings, delimiters,
headers, --map, broken files, rows and row errors."""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import ImportRefused, InvalidInput
from domain.imports import (
    CELL_MAX,
    EXPORT_COLUMNS,
    ImportRow,
    ParsedFile,
    PhoneReader,
    decode,
    error_report,
    parse,
    parse_map,
    parse_value,
)
from domain.phones import normalize_email, normalize_phone, valid_phone
from domain.text import clean_name
from tests.conftest import require

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MAVEN = SHARED / "datasets" / "maven-crm" / "sales_pipeline.csv"


def read(
    data: bytes | str, mapping: dict[str, str] | None = None, **options: object
) -> tuple[ParsedFile, list[ImportRow]]:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    options = {"default_region": "VN", **options}
    parsed = parse(raw, mapping=mapping, zone=SAIGON, now=NOW, **options)  # type: ignore[arg-type]
    return parsed, list(parsed.rows)


def cp1258(text: str) -> bytes:
    """Vietnamese as Windows-1258 writes it: base letters precomposed, tone marks combining."""
    tones = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}
    out = []
    for ch in text:
        parts = unicodedata.normalize("NFD", ch)
        marks = [p for p in parts if p in tones]
        out.append(unicodedata.normalize("NFC", "".join(p for p in parts if p not in tones)))
        out.extend(marks)
    return "".join(out).encode("cp1258")


VIETNAMESE = "Họ và tên,Số điện thoại\nNguyễn Văn Đức,0912 345 678\nTrần Thị Ánh Tuyết,0987654321\n"


# --- encodings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (VIETNAMESE.encode("utf-8"), "utf-8"),
        (VIETNAMESE.encode("utf-8-sig"), "utf-8-sig"),
        (VIETNAMESE.encode("utf-16"), "utf-16"),
        (VIETNAMESE.encode("utf-16-le"), "utf-16-le"),
        (VIETNAMESE.encode("utf-16-be"), "utf-16-be"),
        (cp1258(VIETNAMESE), "cp1258"),
    ],
)
def test_utf8_bom_utf16_and_windows_1258_files_read_the_same_names(
    encoded: bytes, encoding: str
) -> None:
    parsed, rows = read(encoded)
    assert parsed.encoding == encoding
    assert [r.name for r in rows] == ["Nguyễn Văn Đức", "Trần Thị Ánh Tuyết"]
    assert all(unicodedata.is_normalized("NFC", r.name or "") for r in rows)
    assert decode(encoded).lstrip("\ufeff") == VIETNAMESE


def test_windows_1258_really_uses_combining_tone_marks_and_decodes_to_nfc() -> None:
    legacy = cp1258("Đức")
    assert legacy.decode("cp1258") != "Đức"  # decomposed as the legacy code page stores it
    assert decode(legacy) == "Đức"


def test_a_file_valid_utf8_at_first_but_not_further_down_is_read_as_windows_1258() -> None:
    text = "Phone,Name\n" + "0912345678,An\n" * 6000 + "0912345679,Đức\n"
    data = text.encode("utf-8")[:-6] + cp1258("Đức\n")
    assert decode(data).endswith("Đức\n")


@pytest.mark.parametrize(
    "junk",
    [
        bytes(range(256)) * 20,  # NUL bytes in a file that is not UTF-16
        bytes([1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 16]) * 200,  # control characters
        b"\x00\x01\x02\x03" * 1000,
    ],
)
def test_binary_junk_is_refused_with_a_reason(junk: bytes) -> None:
    with pytest.raises(ImportRefused, match="binary"):
        read(junk)
    with pytest.raises(ImportRefused, match="binary"):
        decode(junk)


@pytest.mark.parametrize("empty", [b"", b"\xef\xbb\xbf", b"\n\n  \n"])
def test_an_empty_file_is_refused(empty: bytes) -> None:
    with pytest.raises(ImportRefused, match="empty"):
        read(empty)


def test_an_old_xls_file_is_refused_with_what_to_do() -> None:
    with pytest.raises(ImportRefused, match=r"\.xlsx or CSV"):
        read(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)


def test_an_xlsx_workbook_is_read_from_its_first_sheet() -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["Họ và tên", "Số điện thoại", "Ngày tạo", "Giá trị", "Thẻ"])
    sheet.append(["Nguyễn Văn An", 912345678, datetime(2024, 3, 1, 8, 0), 15000000, "vip"])
    sheet.append([None, None, None, None, None])
    sheet.append(["Bình", "+84 987 654 321", "01/03/2024", 1.5, None])
    book.create_sheet("Other").append(["ignored"])
    out = io.BytesIO()
    book.save(out)
    parsed, rows = read(out.getvalue())
    assert parsed.format == "xlsx"
    assert parsed.encoding is None
    assert [(r.row, r.name, r.phone) for r in rows] == [
        (2, "Nguyễn Văn An", "+84912345678"),
        (4, "Bình", "+84987654321"),
    ]
    assert rows[0].created_at == datetime(2024, 3, 1, 1, 0, tzinfo=UTC)
    assert rows[0].value == Decimal(15000000)
    assert rows[1].value == Decimal("1.5")
    assert rows[0].tags == ["vip"]
    assert rows[1].tags == []


def test_a_zip_that_is_no_workbook_is_refused() -> None:
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("contacts.csv", "phone\n0912345678\n")
    with pytest.raises(ImportRefused, match=r"(?i)workbook"):
        read(out.getvalue())


def test_a_binary_stream_is_read_like_bytes() -> None:
    parsed = parse(
        io.BytesIO(VIETNAMESE.encode("utf-16")), default_region="VN", zone=SAIGON, now=NOW
    )
    assert [r.phone for r in parsed.rows] == ["+84912345678", "+84987654321"]


# --- delimiters ------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_comma_semicolon_tab_and_pipe_delimiters_are_detected(delimiter: str) -> None:
    lines = [
        ["Name", "Phone", "Value"],
        ["Nguyễn An", "0912 345 678", "15.000.000"],
        ["Lê, Bình", "0987654321", "1,500,000"],
    ]
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter).writerows(lines)
    parsed, rows = read(out.getvalue())
    assert parsed.delimiter == delimiter
    assert [(r.name, r.value) for r in rows] == [
        ("Nguyễn An", Decimal(15000000)),
        ("Lê, Bình", Decimal(1500000)),
    ]


def test_a_single_column_header_over_rows_with_another_delimiter_is_refused() -> None:
    with pytest.raises(ImportRefused, match="wrong delimiter"):
        read("Phone\n0912345678;An\n0912345679;Bình\n0912345670;Chi\n")


def test_rows_that_do_not_split_like_the_header_are_refused() -> None:
    with pytest.raises(ImportRefused, match="wrong delimiter"):
        read("phone,name\n0912345678;An\n0912345679;Bình\n0912345670;Chi\n")


def test_a_one_column_file_of_phones_is_fine() -> None:
    parsed, rows = read("Số điện thoại\n0912345678\n+84 987 654 321\n")
    assert parsed.columns == {"Số điện thoại": "phone"}
    assert [r.phone for r in rows] == ["+84912345678", "+84987654321"]


# --- headers ---------------------------------------------------------------------------------


def test_respond_io_contact_export_headers_are_recognised() -> None:
    parsed, rows = read(
        "ContactID,First Name,Last Name,Phone Number,Email,Lifecycle,Assignee,Tags,"
        "Created At,Language\n"
        "1001,An,Nguyen,+84912345678,an@x.vn,Lead,Lê Hoa,vip,2024-03-01 10:00,vi\n"
    )
    assert parsed.columns == {
        "ContactID": "external_id",
        "First Name": "first_name",
        "Last Name": "last_name",
        "Phone Number": "phone",
        "Email": "email",
        "Lifecycle": "stage",
        "Assignee": "owner",
        "Tags": "tags",
        "Created At": "created_at",
    }
    assert parsed.unknown_columns == ["Language"]
    (row,) = rows
    assert (row.external_id, row.name, row.stage, row.owner) == (
        "1001",
        "An Nguyen",
        "Lead",
        "Lê Hoa",
    )
    assert "name" in parsed.fields


def test_hubspot_contact_export_headers_are_recognised_and_mobile_backs_up_phone() -> None:
    parsed, rows = read(
        "Record ID,First Name,Last Name,Email,Phone Number,Mobile Phone Number,Company Name,"
        "Lifecycle Stage,Lead Status,Contact owner,Create Date,Original Source\n"
        "51,An,Nguyen,AN@X.VN,,0912345678,Cty A,Lead,Open,Lê Hoa,2024-03-01 10:00,Zalo\n"
        "52,Bình,Tran,b@x.vn,0987654321,0912000000,,customer,,,,\n"
    )
    assert parsed.columns["Record ID"] == "external_id"
    assert parsed.columns["Mobile Phone Number"] == "phone"
    assert parsed.columns["Lead Status"] == "custom:lead_status"
    assert parsed.unknown_columns == []
    first, second = rows
    assert first.phone == "+84912345678"  # Phone Number empty: the mobile number
    assert second.phone == "+84987654321"
    assert first.email == "an@x.vn"
    assert (first.company, first.source, first.owner) == ("Cty A", "Zalo", "Lê Hoa")
    assert first.custom_fields == {"lead_status": "Open"}


def test_our_export_reads_back_and_its_internal_id_is_not_an_external_id() -> None:
    header = [*EXPORT_COLUMNS, "custom:Hạng"]
    cells = ["17", "Nguyễn An", "+84912345678", "an@x.vn", "", "Cty A", "Zalo", "Lê Hoa"]
    cells += ["SQL", "15000000", "vip; hội chợ", "2024-03-01T10:00:00+07:00", "", "", "Vàng"]
    out = io.StringIO()
    csv.writer(out).writerows([header, cells])
    parsed, (row,) = read(out.getvalue())
    assert parsed.ignored_columns == ["id"]
    assert "id" not in parsed.columns
    assert row.external_id is None
    assert row.tags == ["vip", "hội chợ"]
    assert row.custom_fields == {"Hạng": "Vàng"}
    assert row.created_at == datetime(2024, 3, 1, 3, 0, tzinfo=UTC)
    _, (again,) = read(out.getvalue(), parse_map(["id=external_id"]))
    assert again.external_id == "17"


def test_vietnamese_headers_are_recognised_ignoring_case_and_accents() -> None:
    parsed, (row,) = read(
        "HỌ VÀ TÊN;SĐT;Email;Công ty;Nguồn;Giai đoạn;Người phụ trách;Thẻ;so dien thoai du phong\n"
        "Nguyễn An;0912 345 678;an@x.vn;Cty A;Hội chợ;Tiềm năng;Lê Hoa;vip;x\n"
    )
    assert parsed.columns == {
        "HỌ VÀ TÊN": "name",
        "SĐT": "phone",
        "Email": "email",
        "Công ty": "company",
        "Nguồn": "source",
        "Giai đoạn": "stage",
        "Người phụ trách": "owner",
        "Thẻ": "tags",
    }
    assert parsed.unknown_columns == ["so dien thoai du phong"]
    assert (row.company, row.source, row.stage, row.owner) == (
        "Cty A",
        "Hội chợ",
        "Tiềm năng",
        "Lê Hoa",
    )


def test_ho_and_ten_columns_join_family_name_first_and_ten_alone_is_the_name() -> None:
    _, (split,) = read("Họ,Tên,Số điện thoại\nNguyễn Văn,An,0912345678\n")
    assert split.name == "Nguyễn Văn An"
    _, (single,) = read("Tên,Số điện thoại\nNguyễn Văn An,0912345678\n")
    assert single.name == "Nguyễn Văn An"


def test_a_duplicated_header_of_a_field_is_refused() -> None:
    with pytest.raises(ImportRefused, match="appears twice"):
        read("Phone,Phone\n0912345678,0912345679\n")


# --- headers named like a custom field ------------------------------------------------------

BUDGET = ("Ngân sách", "Ngân sách")  # a defined custom field, as (key, name)


def test_a_header_naming_a_custom_field_fills_it_ignoring_case_accents_and_spaces() -> None:
    for header in ("Ngân sách", "NGAN SACH", "ngan_sach", "Ngân-Sách"):
        parsed, (row,) = read(f"Phone,{header}\n0912345678,15000000\n", defined=[BUDGET])
        assert parsed.columns == {"Phone": "phone", header: "custom:Ngân sách"}
        assert parsed.unknown_columns == []
        assert parsed.field_columns == [(header, "Ngân sách")]
        assert row.custom_fields == {"Ngân sách": "15000000"}


def test_a_header_naming_no_custom_field_stays_unknown() -> None:
    parsed, (row,) = read("Phone,Ngân quỹ\n0912345678,15000000\n", defined=[BUDGET])
    assert parsed.unknown_columns == ["Ngân quỹ"]
    assert parsed.field_columns == []
    assert row.custom_fields == {}


def test_a_custom_field_is_recognised_by_its_key_as_well_as_its_name() -> None:
    parsed, (row,) = read("Email,budget_vnd\nan@x.vn,5\n", defined=[("budget_vnd", "Ngân sách")])
    assert parsed.field_columns == [("budget_vnd", "Ngân sách")]
    assert row.custom_fields == {"budget_vnd": "5"}


def test_a_built_in_header_wins_over_a_custom_field_of_that_name_and_says_so() -> None:
    parsed, (row,) = read(
        "Phone,Source,ID\n0912345678,Zalo,17\n", defined=[("Source", "Source"), ("ID", "ID")]
    )
    assert parsed.columns == {"Phone": "phone", "Source": "source"}
    assert parsed.ignored_columns == ["ID"]  # our export's internal id, never a field
    assert parsed.field_columns == []
    assert parsed.shadowed_columns == [("Source", "source", "Source"), ("ID", "ignore", "ID")]
    assert (row.source, row.custom_fields) == ("Zalo", {})


def test_map_still_sends_a_built_in_header_to_the_custom_field() -> None:
    parsed, (row,) = read(
        "Phone,Source\n0912345678,Zalo\n",
        parse_map(["Source=custom:Source"]),
        defined=[("Source", "Source")],
    )
    assert parsed.shadowed_columns == []
    assert (row.source, row.custom_fields) == (None, {"Source": "Zalo"})


def test_a_defined_field_takes_a_header_that_is_only_a_custom_field_by_default() -> None:
    parsed, (row,) = read(
        "Email,Lead Status\nan@x.vn,Open\n", defined=[("Lead status", "Lead status")]
    )
    assert parsed.columns["Lead Status"] == "custom:Lead status"
    assert row.custom_fields == {"Lead status": "Open"}


# --- --map -----------------------------------------------------------------------------------


def test_map_pairs_columns_with_fields_and_overrides_recognition() -> None:
    mapping = parse_map(["Mã KH=external_id", "Phone=ignore", "Di động=phone", "Hạng=custom:tier"])
    parsed, (row,) = read("Mã KH,Phone,Di động,Hạng\nKH-1,0999999999,0912345678,Vàng\n", mapping)
    assert parsed.columns == {"Mã KH": "external_id", "Di động": "phone", "Hạng": "custom:tier"}
    assert parsed.ignored_columns == ["Phone"]
    assert (row.external_id, row.phone, row.custom_fields) == (
        "KH-1",
        "+84912345678",
        {"tier": "Vàng"},
    )


def test_map_refuses_an_unknown_field_naming_the_allowed_ones() -> None:
    with pytest.raises(InvalidInput, match="fields are: name, phone, email, external_id"):
        parse_map(["Hạng=tier"])
    with pytest.raises(InvalidInput, match="COLUMN=FIELD"):
        parse_map(["phone"])


def test_map_of_a_column_the_file_lacks_is_refused_listing_its_columns() -> None:
    with pytest.raises(ImportRefused, match="does not have; its columns are: phone, name"):
        read("phone,name\n0912345678,An\n", parse_map(["Mobile=phone"]))


def test_the_maven_sales_pipeline_imports_with_a_mapping() -> None:
    require(MAVEN.exists(), f"the shared datasets are not at {MAVEN} (../shared, on CI)")
    mapping = parse_map(
        [
            "opportunity_id=external_id",
            "sales_agent=owner",
            "account=company",
            "deal_stage=stage",
            "close_value=value",
            "engage_date=stage_changed_at",
            "product=custom:product",
            "close_date=custom:close_date",
        ]
    )
    with pytest.raises(ImportRefused, match="Missing identifier column"):
        read(MAVEN.read_bytes())
    parsed, rows = read(MAVEN.read_bytes(), mapping)
    assert parsed.errors == []
    assert len(rows) == 8800
    first = rows[0]
    assert (first.row, first.external_id, first.owner, first.company, first.stage) == (
        2,
        "1C1I7A6R",
        "Moses Frase",
        "Cancity",
        "Won",
    )
    assert first.value == Decimal(1054)
    assert first.stage_changed_at == datetime(2016, 10, 19, 17, 0, tzinfo=UTC)
    assert first.custom_fields == {"product": "GTX Plus Basic", "close_date": "2017-03-01"}
    assert first.tags is None  # no tags column: tags are left alone
    assert {r.stage for r in rows} == {"Prospecting", "Engaging", "Won", "Lost"}
    assert sum(r.company is None for r in rows) == 1425
    assert all(r.stage_changed_at is None for r in rows if r.stage == "Prospecting")


# --- broken files ----------------------------------------------------------------------------


def test_a_file_without_any_identifier_column_is_refused() -> None:
    with pytest.raises(ImportRefused, match=r"Missing identifier column.*--map"):
        read("Name,Company\nAn,Cty A\n")


def test_the_identifier_column_follows_the_match_option() -> None:
    with pytest.raises(ImportRefused, match="no email column"):
        read("Phone,Name\n0912345678,An\n", match=["email"])


def test_a_10_mb_cell_refuses_the_file() -> None:
    huge = b"phone,note\n0912345678," + b"x" * 10_000_000 + b"\n0912345679,ok\n"
    with pytest.raises(ImportRefused, match="longer than"):
        read(huge)
    quoted = b'phone,note\n0912345678,"' + b"x\n" * 5_000_000 + b'"\n'
    with pytest.raises(ImportRefused, match="longer than"):
        read(quoted)


def test_a_cell_over_the_limit_rejects_its_row_only() -> None:
    long_note = "x" * (CELL_MAX + 1)
    parsed, rows = read(f"phone,note\n0912345678,{long_note}\n0912345679,ok\n")
    assert [r.phone for r in rows] == ["+84912345679"]
    assert [(e.row, e.column) for e in parsed.errors] == [(2, "note")]
    assert "10,000 characters" in parsed.errors[0].reason


# --- rows ------------------------------------------------------------------------------------


def test_row_errors_name_the_spreadsheet_row_the_column_and_the_reason() -> None:
    parsed, rows = read(
        "Phone,Email,Value,Created At\n"
        "0912345678,an@x.vn,100,2024-01-01\n"
        "\n"
        "12ab,not-an-email,-5,2099-01-01\n"
        ",,,\n"
        "0912345679,,,\n"
    )
    assert [r.row for r in rows] == [2, 6]
    assert [(e.row, e.column) for e in parsed.errors] == [
        (4, "Phone"),
        (4, "Email"),
        (4, "Value"),
        (4, "Created At"),
    ]
    reasons = [e.reason for e in parsed.errors]
    assert "not a phone number" in reasons[0]
    assert "not an email address" in reasons[1]
    assert "negative" in reasons[2]
    assert "in the future" in reasons[3]


def test_a_row_with_more_cells_than_the_header_is_rejected() -> None:
    parsed, rows = read("Phone,Name\n0912345678,An,extra,cells\n0912345679,Bình,,\n")
    assert [r.row for r in rows] == [3]
    assert parsed.errors[0].row == 2
    assert parsed.errors[0].column is None


def test_a_row_without_any_identifier_is_rejected() -> None:
    parsed, rows = read("Phone,Name\n,Nguyễn An\n")
    assert rows == []
    assert parsed.errors[0].reason == "no phone, email or external id to find the contact by"


def test_duplicate_identifiers_in_one_file_are_reported_on_the_later_row() -> None:
    parsed, rows = read(
        "Phone,Email\n0912 345 678,a@x.vn\n+84912345678,b@x.vn\n0987654321,A@X.VN\n"
    )
    assert [r.row for r in rows] == [2]
    assert [(e.row, e.column, e.reason) for e in parsed.errors] == [
        (3, "Phone", "the same phone as row 2"),
        (4, "Email", "the same email as row 2"),
    ]


def test_the_error_report_is_utf8_csv_with_bom_and_the_original_cells() -> None:
    parsed, _ = read("Số điện thoại,Họ và tên\n12ab,Nguyễn An\n")
    report = parsed.error_report()
    assert report.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(report.decode("utf-8-sig"))))
    assert lines == [
        ["row", "column", "reason", "Số điện thoại", "Họ và tên"],
        ["2", "Số điện thoại", "'12ab' is not a phone number", "12ab", "Nguyễn An"],
    ]
    assert error_report([]).decode("utf-8-sig") == "row,column,reason\r\n"


def test_no_tags_column_means_tags_are_left_alone_and_an_empty_cell_clears_them() -> None:
    parsed, (row,) = read("Phone\n0912345678\n")
    assert row.tags is None
    assert not parsed.has_tags
    assert row.draft().tags == []
    parsed, rows = read('Phone,Tags\n0912345678,\n0912345679,vip; hot; VIP\n0912345670,"a, b"\n')
    assert parsed.has_tags
    assert [r.tags for r in rows] == [[], ["vip", "hot"], ["a", "b"]]


@pytest.mark.parametrize(
    "written", ["0912 345 678", "+84 912-345-678", "84912345678", "0912.345.678", "912345678"]
)
def test_vietnamese_phone_formats_normalize_to_e164(written: str) -> None:
    _, (row,) = read(f"Phone\n{written}\n")
    assert row.phone == "+84912345678"


@pytest.mark.parametrize(
    ("written", "region", "reason"),
    [
        ("0000000000", "VN", "'0000000000' is not a phone number"),
        ("1111111111", "VN", "'1111111111' is not a phone number"),
        ("555-1234", "US", "'555-1234' is not a phone number"),  # a US local number: no area
        ("+84 912 345 678 ext. 12", "VN", "has an extension (ext. 12)"),
        ("(415) 555-2671 x123", "US", "has an extension (ext. 123)"),
    ],
)
def test_placeholder_local_and_extension_numbers_reject_their_row_saying_why(
    written: str, region: str, reason: str
) -> None:
    parsed, rows = read(f"Phone,Name\n{written},An\n+1 415 555 2671,Bình\n", default_region=region)
    assert [r.name for r in rows] == ["Bình"]
    assert [(e.row, e.column) for e in parsed.errors] == [(2, "Phone")]
    assert reason in parsed.errors[0].reason
    with pytest.raises(InvalidInput, match=re.escape(reason)):
        normalize_phone(written, region)


@pytest.mark.parametrize(
    "written", ["a..b@x.com", ".a@x.com", "a.@x.com", "a@x..com", "a@-x.com", "a@x.c0m", "a@x"]
)
def test_malformed_email_addresses_reject_their_row(written: str) -> None:
    parsed, rows = read(f"Email,Phone\n{written},0912345678\nan@công-ty.vn,0912345679\n")
    assert [r.email for r in rows] == ["an@công-ty.vn"]
    assert [(e.row, e.column) for e in parsed.errors] == [(2, "Email")]
    with pytest.raises(InvalidInput, match="not an email address"):
        normalize_email(written)


@pytest.mark.parametrize(
    ("written", "amount"),
    [
        ("15000000", "15000000"),
        ("15,000,000", "15000000"),
        ("15.000.000", "15000000"),
        ("15 000 000 ₫", "15000000"),
        ("15.000.000đ", "15000000"),
        ("15.000", "15000"),
        ("1,500", "1500"),
        ("1.005", "1005"),
        ("1.5", "1.5"),
        ("1,5", "1.5"),
        ("0.500", "0.5"),
        ("1.500.000,50", "1500000.50"),
        ("1,500,000.50", "1500000.50"),
        ("1.5e6", "1500000"),
        ("$1,200", "1200"),
    ],
)
def test_amounts_are_read_as_people_write_them(written: str, amount: str) -> None:
    assert parse_value(written) == Decimal(amount)


@pytest.mark.parametrize("written", ["-5", "abc", "1.234.56", "1.2345", "1e20", "nan", "₫"])
def test_amounts_that_are_no_amount_are_refused(written: str) -> None:
    with pytest.raises(ValueError, match=r"amount|negative|decimals|large"):
        parse_value(written)


@pytest.mark.parametrize(
    ("written", "moment"),
    [
        ("2024-03-01", datetime(2024, 2, 29, 17, 0, tzinfo=UTC)),
        ("2024-03-01 10:30", datetime(2024, 3, 1, 3, 30, tzinfo=UTC)),
        ("2024-03-01T10:30:15Z", datetime(2024, 3, 1, 10, 30, 15, tzinfo=UTC)),
        ("2024-03-01T10:30+09:00", datetime(2024, 3, 1, 1, 30, tzinfo=UTC)),
        ("01/03/2024", datetime(2024, 2, 29, 17, 0, tzinfo=UTC)),
        ("1/3/2024 08:05", datetime(2024, 3, 1, 1, 5, tzinfo=UTC)),
        ("25.12.2023", datetime(2023, 12, 24, 17, 0, tzinfo=UTC)),
    ],
)
def test_backdated_columns_read_iso_and_day_first_dates_in_the_organisation_zone(
    written: str, moment: datetime
) -> None:
    parsed, (row,) = read(f"Phone,Created At,Stage Changed At\n0912345678,{written},{written}\n")
    assert parsed.errors == []
    assert row.created_at == moment
    assert row.stage_changed_at == moment


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("03/25/2024", "day first"),
        ("2026-03-03", "in the future"),
        ("31/02/2024", "not a date"),
        ("yesterday", "not a date"),
        ("1899-12-31", "before 1900"),
    ],
)
def test_dates_that_cannot_be_trusted_reject_the_row(written: str, reason: str) -> None:
    parsed, rows = read(f"Phone,Created At\n0912345678,{written}\n")
    assert rows == []
    assert reason in parsed.errors[0].reason


def test_the_first_day_of_1900_is_a_date_in_any_zone() -> None:
    parsed, (row,) = read("Phone,Created At\n0912345678,1900-01-01\n")
    assert parsed.errors == []
    assert row.created_at == datetime(1900, 1, 1, tzinfo=SAIGON)  # 1899 in UTC


def test_a_stage_change_before_the_contact_was_created_is_rejected() -> None:
    parsed, rows = read("Phone,Created At,Stage Changed At\n0912345678,2024-03-02,2024-03-01\n")
    assert rows == []
    assert parsed.errors[0].column == "Stage Changed At"


def test_an_import_row_becomes_a_contact_draft() -> None:
    _, (row,) = read('Phone,Name,Value,Tags\n0912345678,An,"15,000",vip\n')
    draft = row.draft()
    assert (draft.phone, draft.name, draft.value, draft.tags) == (
        "+84912345678",
        "An",
        "15000",
        ["vip"],
    )
    assert row.identifiers() == {"phone": "+84912345678"}


# --- properties ------------------------------------------------------------------------------

LETTERS = "aăâbcdđeêghiklmnoôơpqrstuưvxyAĂÂĐÊÔƠƯàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọ"
name_text = st.text(alphabet=LETTERS + "  ", min_size=1, max_size=40).filter(
    lambda t: t.strip() != ""
)
phone_style = st.sampled_from(["0{}", "+84 {}", "84{}", "0{} ", "(+84) {}"])
row_data = st.tuples(
    name_text,
    st.integers(min_value=0, max_value=89_999_999),  # 90… to 98…: Vietnamese mobiles
    phone_style,
    st.sampled_from(["Lead", "MQL", "Khách hàng", "Đã mất"]),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10**13)),
    st.lists(st.sampled_from(["vip", "hot", "hội chợ", "b2b"]), max_size=3, unique=True),
    st.one_of(
        st.none(),
        st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2025, 12, 31)),
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(row_data, min_size=1, max_size=30, unique_by=lambda r: r[1]))
def test_rows_written_with_our_export_headers_read_back_the_same_normalized_values(
    rows: list[tuple[str, int, str, str, int | None, list[str], datetime | None]],
) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    for i, (name, number, style, stage, value, tags, created) in enumerate(rows):
        phone = style.format(f"9{number:08}")
        writer.writerow(
            [
                i,
                name,
                phone,
                f"User{i}@Example.VN",
                f"EXT-{i}",
                "",
                "",
                "",
                stage,
                "" if value is None else f"{value:,}",
                "; ".join(tags),
                "" if created is None else created.isoformat(sep=" "),
                "",
                "",
            ]
        )
    parsed, read_back = read(out.getvalue())
    assert parsed.errors == []
    assert len(read_back) == len(rows)
    for i, (row, (name, number, _, stage, value, tags, created)) in enumerate(
        zip(read_back, rows, strict=True)
    ):
        assert row.row == i + 2
        assert row.name == clean_name(name)
        assert row.phone == f"+849{number:08}"
        assert row.email == f"user{i}@example.vn"
        assert row.external_id == f"EXT-{i}"
        assert row.stage == stage
        assert row.value == (None if value is None else Decimal(value))
        assert row.tags == tags
        expected = None if created is None else created.replace(tzinfo=SAIGON).astimezone(UTC)
        assert row.created_at == expected


digits = st.text(alphabet="0123456789", min_size=4, max_size=15)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["", "+", "00", "0", "84", "+84 ", "0084"]), digits),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["VN", "US", "FR", "SG", "GB"]),
)
def test_the_fast_phone_reader_agrees_with_phonenumbers(
    numbers: list[tuple[str, str]], region: str
) -> None:
    reader = PhoneReader(region)
    for prefix, rest in numbers:
        for text in (
            prefix + rest,
            f"{prefix}{rest[:3]} {rest[3:]}",
            f"{prefix}{rest[:2]}-{rest[2:]}",
        ):
            assert reader(text) == valid_phone(text, region), text
