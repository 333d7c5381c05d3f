"""Custom fields and tags (ISSUE 5, part 5), bulk moves and exports by saved view (parts 2, 4, 6),
on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bot.cli import main
from bot.container import Services
from domain.access import SYSTEM
from domain.errors import AccessDenied, InvalidInput, NotFound, StaleVersion
from domain.fields import InvalidFieldValue
from domain.model import FieldKind, Role, Source, User
from domain.services.contacts import ContactDraft
from domain.services.imports import ImportOptions
from domain.services.operations import Selection


@pytest.fixture
async def crm(services: Services) -> tuple[Services, User, User]:
    await services.stages.apply_template(SYSTEM, "amis")
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=1)
    otto = await services.users.add(SYSTEM, "Otto", Role.AGENT, team="south", telegram_id=2)
    await services.fields.add(SYSTEM, "Ngành", FieldKind.CHOICE, ["Bán lẻ", "Sản xuất"])
    await services.fields.add(SYSTEM, "Ngân sách", FieldKind.NUMBER)
    await services.fields.add(SYSTEM, "Ngày ký", FieldKind.DATE)
    await services.fields.add(SYSTEM, "Ghi chú", FieldKind.TEXT)
    for name, owner, stage in (
        ("An", lan, "Lead"),
        ("Bình", lan, "Lead"),
        ("Chi", lan, "MQL"),
        ("Dũng", otto, "Lead"),
    ):
        await services.contacts.add(owner, ContactDraft(name=name, stage=stage))
    return services, lan, otto


async def contact_named(services: Services, name: str) -> int:
    [found] = await services.contacts.find(SYSTEM, name)
    assert found.contact.id is not None
    return found.contact.id


async def test_field_values_are_stored_in_one_spelling_whatever_was_typed(
    crm: tuple[Services, User, User],
) -> None:
    services, lan, _ = crm
    an = await contact_named(services, "An")
    for name, typed in (
        ("ngành", "ban le"),
        ("Ngân sách", "1.500.000"),
        ("ngay ky", "25/12/2026"),
        ("Ghi chú", "  gọi lại   sau Tết "),
    ):
        version = (await services.contacts.get(lan, an)).contact.version
        await services.contacts.set_field(lan, an, name, typed, expected_version=version)
    contact = (await services.contacts.get(lan, an)).contact
    assert contact.custom_fields == {
        "Ngành": "Bán lẻ",
        "Ngân sách": "1500000",
        "Ngày ký": "2026-12-25",
        "Ghi chú": "gọi lại sau Tết",
    }
    await services.contacts.set_field(lan, an, "Ngành", "", expected_version=contact.version)
    assert "Ngành" not in (await services.contacts.get(lan, an)).contact.custom_fields


async def test_a_value_the_field_refuses_changes_nothing(crm: tuple[Services, User, User]) -> None:
    services, lan, otto = crm
    an = await contact_named(services, "An")
    before = (await services.contacts.get(lan, an)).contact
    for name, typed, reason in (
        ("Ngành", "Dịch vụ", "not one of Bán lẻ, Sản xuất"),
        ("Ngân sách", "nhiều lắm", "not a number"),
        ("Ngày ký", "31/02/2026", "not a date"),
    ):
        with pytest.raises(InvalidFieldValue, match=reason):
            await services.contacts.set_field(lan, an, name, typed, expected_version=before.version)
    with pytest.raises(NotFound):
        await services.contacts.set_field(lan, an, "Màu", "đỏ", expected_version=before.version)
    with pytest.raises(AccessDenied):
        await services.contacts.set_tags(otto, an, ["VIP"], expected_version=before.version)
    with pytest.raises(StaleVersion):
        await services.contacts.set_tags(lan, an, ["VIP"], expected_version=before.version - 1)
    after = (await services.contacts.get(lan, an)).contact
    assert (after.version, after.custom_fields, after.tags) == (before.version, {}, [])


async def test_tags_are_replaced_deduplicated_and_cleared(crm: tuple[Services, User, User]) -> None:
    services, lan, _ = crm
    an = await contact_named(services, "An")
    contact = await services.contacts.set_tags(
        lan, an, ["VIP", " hội chợ ", "vip", ""], expected_version=1
    )
    assert contact.tags == ["VIP", "hội chợ"]
    assert (await services.contacts.get(lan, an)).contact.tags == ["VIP", "hội chợ"]
    cleared = await services.contacts.set_tags(lan, an, [], expected_version=contact.version)
    assert (await services.contacts.get(lan, an)).contact.tags == cleared.tags == []


async def test_definitions_are_checked_and_deleting_one_keeps_the_values(
    crm: tuple[Services, User, User],
) -> None:
    services, lan, _ = crm
    for name, kind, choices, reason in (
        ("nganh", FieldKind.TEXT, [], "exists"),
        ("Hạng", FieldKind.CHOICE, ["A"], "2 to 20 choices"),
        ("Hạng", FieldKind.CHOICE, ["A", "a"], "twice"),
        ("Hạng", FieldKind.TEXT, ["A", "B"], "Only a choice field"),
        ("", FieldKind.TEXT, [], "name"),
    ):
        with pytest.raises(InvalidInput, match=reason):
            await services.fields.add(SYSTEM, name, kind, choices)
    with pytest.raises(AccessDenied):
        await services.fields.add(lan, "Hạng", FieldKind.TEXT)
    an = await contact_named(services, "An")
    await services.contacts.set_field(lan, an, "Ngành", "Sản xuất", expected_version=1)
    await services.fields.delete(SYSTEM, "ngành")
    assert [f.name for f in await services.fields.list()] == ["Ngân sách", "Ngày ký", "Ghi chú"]
    assert (await services.contacts.get(lan, an)).contact.custom_fields == {"Ngành": "Sản xuất"}


async def test_a_view_on_a_field_matches_values_typed_another_way(
    crm: tuple[Services, User, User],
) -> None:
    services, lan, _ = crm
    an = await contact_named(services, "An")
    await services.contacts.set_field(lan, an, "Ngân sách", "2,000,000", expected_version=1)
    view = await services.views.save(lan, "Big", 'field:"ngân sách"=2.000.000')
    assert view.id is not None
    _, found = await services.views.open(lan, view.id)
    assert [d.contact.name for d in found] == ["An"]
    with pytest.raises(InvalidInput, match="not a number"):
        await services.views.save(lan, "Bad", 'field:"Ngân sách"=lots')


async def test_a_bulk_move_by_view_moves_exactly_the_view_within_scope_and_undoes(
    crm: tuple[Services, User, User],
) -> None:
    services, lan, _ = crm
    view = await services.views.save(SYSTEM, "Leads", "stage=Lead", shared=True)
    assert view.id is not None
    plan = await services.operations.plan_bulk_move(lan, Selection(view_id=view.id))
    assert (plan.contacts, plan.by_stage) == (2, {"Lead": 2})  # Dũng is Otto's
    operation = await services.operations.bulk_move(lan, Selection(view_id=view.id), "MQL")
    assert operation.contacts == 2
    assert "view 'Leads'" in operation.description
    for name, expected in (("An", "MQL"), ("Bình", "MQL"), ("Chi", "MQL"), ("Dũng", "Lead")):
        [found] = await services.contacts.find(SYSTEM, name)
        assert found.stage is not None
        assert found.stage.name == expected, name
        history = await services.contacts.history(SYSTEM, found.contact.id or 0)
        assert (history[-1].source is Source.BULK) == (name in ("An", "Bình")), name
    assert operation.id is not None
    undone = await services.operations.undo(lan, operation.id)
    assert undone.reverted == 2
    for name in ("An", "Bình", "Dũng"):
        [found] = await services.contacts.find(SYSTEM, name)
        assert found.stage is not None
        assert found.stage.name == "Lead", name


@pytest.fixture
async def waiting(crm: tuple[Services, User, User]) -> None:
    services, lan, _ = crm
    chi = await contact_named(services, "Chi")
    await services.contacts.set_field(lan, chi, "Ngày ký", "01/02/2026", expected_version=1)
    await services.views.save(lan, "Chờ ký", "stage=MQL")


def test_export_by_view_writes_the_view_with_defined_fields_first(
    waiting: None, tmp_path: Path, database_url: str
) -> None:
    out = tmp_path / "mql.csv"
    assert main(["export", str(out), "--view", "cho ky", "--database-url", database_url]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text("utf-8-sig"), newline="")))
    assert [row["name"] for row in rows] == ["Chi"]
    header = list(rows[0])
    defined = ["custom:Ngành", "custom:Ngân sách", "custom:Ngày ký", "custom:Ghi chú"]
    assert header[-4:] == defined
    assert rows[0]["custom:Ngày ký"] == "2026-02-01"
    assert main(["export", str(out), "--view", "nowhere", "--database-url", database_url]) == 1


def test_fields_on_the_command_line(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> tuple[int, str]:
        code = main([*args, "--database-url", database_url])
        return code, capsys.readouterr().out

    assert run("init")[0] == 0
    code, out = run("fields", "add", "Hạng", "--kind", "choice", "--choice", "A", "--choice", "B")
    assert code == 0
    assert "Added the choice field 'Hạng'" in out
    assert run("fields", "add", "Hạng", "--kind", "text")[0] == 1
    code, out = run("fields", "list", "--json")
    assert json.loads(out) == [{"name": "Hạng", "kind": "choice", "choices": ["A", "B"]}]
    assert run("fields", "delete", "hang")[0] == 0
    assert json.loads(run("fields", "list", "--json")[1]) == []


async def test_an_import_writes_defined_fields_in_their_spelling_and_rejects_bad_values(
    crm: tuple[Services, User, User],
) -> None:
    services, _, _ = crm
    data = (
        "phone,name,custom:ngành,custom:Ngân sách\n"
        "0912 000 001,Giang,ban le,2.000.000\n"
        "0912 000 002,Hà,Dịch vụ,\n"
        "0912 000 003,Khoa,,nhiều\n"
    ).encode()
    report = await services.imports.run(SYSTEM, data, ImportOptions())
    assert report.created == 1
    assert [(e.row, e.column) for e in report.errors] == [
        (3, "custom:ngành"),
        (4, "custom:Ngân sách"),
    ]
    assert "not one of Bán lẻ, Sản xuất" in report.errors[0].reason
    [giang] = await services.contacts.find(SYSTEM, "0912 000 001")
    assert giang.contact.custom_fields == {"Ngành": "Bán lẻ", "Ngân sách": "2000000"}
    assert await services.contacts.find(SYSTEM, "0912 000 002") == []
