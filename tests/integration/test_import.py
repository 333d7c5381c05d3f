"""Importing files (ISSUE 5, part 7), on SQLite and PostgreSQL."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from bot.container import Services
from domain.access import SYSTEM
from domain.errors import DomainError
from domain.model import Category, FieldKind
from domain.services.contacts import ContactDraft
from domain.services.imports import ImportOptions, ImportService, Mode
from storage.import_batches import batches
from tests.conftest import shared_path


@pytest.fixture
async def amis(services: Services) -> Services:
    await services.stages.apply_template(SYSTEM, "amis")
    return services


async def stage_of(services: Services, query: str) -> str | None:
    [found] = await services.contacts.find(SYSTEM, query)
    return found.stage.name if found.stage else None


async def test_an_update_only_import_matched_by_a_differently_written_phone_creates_nothing(
    amis: Services,
) -> None:
    await amis.contacts.add(
        SYSTEM, ContactDraft(name="Nguyễn Văn An", phone="+84912345678", stage="Lead")
    )
    data = b"phone,stage,source\n0912 345 678,SQL,Zalo\n0900 000 000,MQL,Web\n"
    report = await amis.imports.run(SYSTEM, data, ImportOptions(mode=Mode.UPDATE))
    assert (report.created, report.updated, report.rejected) == (0, 1, 1)
    assert "no contact matches" in report.errors[0].reason
    assert await stage_of(amis, "nguyen van an") == "SQL"
    assert await amis.contacts.find(SYSTEM, "0900000000") == []
    [an] = await amis.contacts.find(SYSTEM, "an")
    assert an.contact.source == "Zalo"


@pytest.mark.parametrize("read_by_a_child", [False, True])
async def test_imported_contacts_are_found_by_their_folded_names_and_companies(
    amis: Services, read_by_a_child: bool
) -> None:
    await amis.contacts.add(SYSTEM, ContactDraft(name="Nguyễn Văn An", company="Đại Phát"))
    data = (
        "name,phone,company\n"
        "Trần Thị Bích,0912000001,ĐẠI PHÁT\n"
        "Lê Minh Châu,0912000002,Hoà Bình Co\n"
        ",0912000003,\n"
    ).encode()
    imports = amis.imports
    if read_by_a_child:  # as a large file is read
        imports = ImportService(
            imports._uow,
            read_batches=batches,
            default_region="VN",
            zone=ZoneInfo("Asia/Ho_Chi_Minh"),
            child_from=0,
        )
    report = await imports.run(SYSTEM, data, ImportOptions())
    assert (report.created, report.rejected) == (3, 0)

    async def names(query: str) -> list[str | None]:
        return sorted(d.contact.name for d in await amis.contacts.find(SYSTEM, query))

    assert await names("dai phat") == ["Nguyễn Văn An", "Trần Thị Bích"]
    assert await names("TRAN thi") == ["Trần Thị Bích"]
    assert await names("hoa binh") == ["Lê Minh Châu"]
    assert await names("chau") == ["Lê Minh Châu"]
    assert await names("0912000003") == [None]


async def test_a_dry_run_reports_the_same_counts_and_changes_nothing(amis: Services) -> None:
    data = "name,email,stage\nLan,lan@x.vn,Lead\nBình,binh@x.vn,Nowhere\n".encode()
    dry = await amis.imports.run(SYSTEM, data, ImportOptions(dry_run=True))
    assert (dry.created, dry.rejected) == (1, 1)
    assert "--create-stages" in dry.errors[0].reason
    assert await amis.contacts.find(SYSTEM, "lan") == []
    assert await amis.operations.recent(SYSTEM) == []
    real = await amis.imports.run(SYSTEM, data, ImportOptions(create_stages=True))
    assert (real.created, real.rejected, real.stages_created) == (2, 0, ["Nowhere"])


async def test_a_broken_file_is_refused_and_changes_nothing(amis: Services) -> None:
    for data in (b"\x00\x01\x02binary\xff\xfe" * 50, b"name;phone\nAn;0912\n"[:0]):
        with pytest.raises(DomainError):
            await amis.imports.run(SYSTEM, data, ImportOptions())
    with pytest.raises(DomainError, match="identifier"):
        await amis.imports.run(SYSTEM, b"name,company\nAn,ACME\n", ImportOptions())
    assert await amis.operations.recent(SYSTEM) == []


async def test_an_import_that_changes_nothing_leaves_nothing_to_undo(amis: Services) -> None:
    await amis.contacts.add(SYSTEM, ContactDraft(name="Chi", email="chi@x.vn", stage="Lead"))
    data = b"email,name\nchi@x.vn,Chi\nnot-an-email,Nobody\n"
    report = await amis.imports.run(SYSTEM, data, ImportOptions())
    assert (report.created, report.updated, report.unchanged, report.rejected) == (0, 0, 1, 1)
    assert report.operation_id is None
    assert await amis.operations.recent(SYSTEM) == []


async def test_an_import_is_undone_exactly(amis: Services) -> None:
    await amis.contacts.add(
        SYSTEM, ContactDraft(name="Chi", email="chi@x.vn", stage="Lead", tags=["old"])
    )
    data = "email,name,stage,tags\nchi@x.vn,Chi Mới,MQL,new\nnew@x.vn,Mới,Lead,\n".encode()
    report = await amis.imports.run(SYSTEM, data, ImportOptions())
    assert (report.created, report.updated) == (1, 1)
    assert report.operation_id is not None
    undone = await amis.operations.undo(SYSTEM, report.operation_id)
    assert undone.reverted == 2
    [chi] = await amis.contacts.find(SYSTEM, "chi@x.vn")
    assert (chi.contact.name, chi.contact.tags, chi.stage.name if chi.stage else None) == (
        "Chi",
        ["old"],
        "Lead",
    )
    assert await amis.contacts.find(SYSTEM, "new@x.vn") == []
    assert [h.source.value for h in await amis.contacts.history(SYSTEM, chi.contact.id or 0)] == [
        "manual"
    ]


async def test_the_search_index_stays_whole_through_an_import_and_its_undo(
    amis: Services,
) -> None:
    data = "email,name\nmai@x.vn,Đặng Mai\nhoa@x.vn,Lý Hoa\n".encode()
    report = await amis.imports.run(SYSTEM, data, ImportOptions())
    assert report.operation_id is not None
    assert [d.contact.email for d in await amis.contacts.find(SYSTEM, "dang mai")] == ["mai@x.vn"]
    await amis.operations.undo(SYSTEM, report.operation_id)
    assert await amis.contacts.find(SYSTEM, "ly hoa") == []
    if amis.engine.dialect.name == "sqlite":
        async with amis.engine.begin() as connection:
            # FTS5 raises if an entry is missing, extra or different from the contacts' text.
            await connection.execute(
                text(
                    "INSERT INTO contact_search(contact_search, rank) VALUES ('integrity-check', 1)"
                )
            )


async def test_tags_are_left_alone_when_the_file_has_no_tags_column(amis: Services) -> None:
    await amis.contacts.add(SYSTEM, ContactDraft(name="Dũng", phone="0912000111", tags=["VIP"]))
    await amis.imports.run(SYSTEM, b"phone,name\n0912000111,Dung Tran\n", ImportOptions())
    [dung] = await amis.contacts.find(SYSTEM, "0912000111")
    assert (dung.contact.name, dung.contact.tags) == ("Dung Tran", ["VIP"])


async def test_the_maven_pipeline_imports_with_a_mapping_and_its_stages_are_then_recategorized(
    amis: Services, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the 8,800-row file is imported once, on SQLite, to keep the suite short")
    data = shared_path("datasets", "maven-crm", "sales_pipeline.csv").read_bytes()
    mapping = {
        "opportunity_id": "external_id",
        "sales_agent": "owner",
        "account": "company",
        "deal_stage": "stage",
        "close_value": "value",
    }
    report = await amis.imports.run(
        SYSTEM, data, ImportOptions(mapping=mapping, create_stages=True, create_owners=True)
    )
    assert (report.created, report.rejected) == (8800, 0)
    assert sorted(report.stages_created) == ["Engaging", "Lost", "Prospecting", "Won"]
    assert len(report.owners_created) == 30
    await amis.stages.recategorize(SYSTEM, "Won", Category.WON)
    await amis.stages.recategorize(SYSTEM, "Lost", Category.LOST)
    counts = {
        s.stage.name: (s.stage.category.value, s.contacts) for s in await amis.stages.summaries()
    }
    assert counts["Won"] == ("won", 4238)
    assert counts["Lost"] == ("lost", 2473)


async def test_a_column_named_like_a_custom_field_fills_it_and_built_in_headers_win(
    amis: Services,
) -> None:
    await amis.fields.add(SYSTEM, "Ngân sách", FieldKind.NUMBER)
    await amis.fields.add(SYSTEM, "Source", FieldKind.TEXT)
    data = "Phone,NGAN SACH,Source\n0912 345 678,15.000.000 ₫,Zalo\n0912 345 679,abc,Web\n"
    report = await amis.imports.run(SYSTEM, data.encode(), ImportOptions())
    assert (report.created, report.rejected) == (1, 1)
    assert report.field_columns == [("NGAN SACH", "Ngân sách")]
    assert report.shadowed_columns == [("Source", "source", "Source")]
    assert report.unknown_columns == []
    assert (report.errors[0].column, report.errors[0].row) == ("NGAN SACH", 3)  # not a number
    [found] = await amis.contacts.find(SYSTEM, "0912345678")
    assert found.contact.custom_fields == {"Ngân sách": "15000000"}
    assert found.contact.source == "Zalo"


async def test_an_import_in_many_batches_mixing_changes_new_stages_owners_and_companies(
    amis: Services,
) -> None:
    """Batches of two rows, so that each batch's changes, the next one's look-up and the stages,
    owners and companies created on the way all meet while earlier writes are still running."""
    first = "phone,name,stage\n" + "".join(f"091200000{n},Khách {n},Lead\n" for n in range(6))
    await amis.imports.run(SYSTEM, first.encode(), ImportOptions())
    second = (
        "phone,name,stage,company,owner,tags\n"
        "0912000000,Khách 0,SQL,,,\n"
        "0913000001,Mới 1,Hội thảo,,,\n"
        "0912000001,Khách 1 (đổi),Lead,Công ty Mới,,\n"
        "0913000002,Mới 2,Lead,Công ty Mới,Chị Hoa,vip\n"
        "0912000002,Khách 2,Hội thảo,,,\n"
        "0912000003,Khách 3,Lead,,Chị Hoa,\n"
        "0913000003,Mới 3,MQL,Công ty Khác,,\n"
        "0912000004,Khách 4,Nowhere Else,,,\n"
    )
    imports = ImportService(
        amis.imports._uow,
        read_batches=batches,
        default_region="VN",
        zone=ZoneInfo("Asia/Ho_Chi_Minh"),
        batch=2,
    )
    report = await imports.run(
        SYSTEM, second.encode(), ImportOptions(create_stages=True, create_owners=True)
    )
    assert (report.created, report.updated, report.unchanged, report.rejected) == (3, 5, 0, 0)
    assert report.stages_created == ["Hội thảo", "Nowhere Else"]
    assert report.owners_created == ["Chị Hoa"]

    async def card(phone: str) -> tuple[str | None, str | None, str | None, list[str]]:
        [found] = await amis.contacts.find(SYSTEM, phone)
        return (
            found.contact.name,
            found.stage.name if found.stage else None,
            found.owner.name if found.owner else None,
            found.contact.tags,
        )

    assert await card("0912000000") == ("Khách 0", "SQL", None, [])
    assert await card("0912000001") == ("Khách 1 (đổi)", "Lead", None, [])
    assert await card("0912000002") == ("Khách 2", "Hội thảo", None, [])
    assert await card("0912000003") == ("Khách 3", "Lead", "Chị Hoa", [])
    assert await card("0912000004") == ("Khách 4", "Nowhere Else", None, [])
    assert await card("0913000001") == ("Mới 1", "Hội thảo", None, [])
    assert await card("0913000002") == ("Mới 2", "Lead", "Chị Hoa", ["vip"])

    async def company(phone: str) -> int | None:
        [found] = await amis.contacts.find(SYSTEM, phone)
        return found.contact.company_id

    # One company made of the name written twice, in two batches; another for the other name.
    assert await company("0912000001") == await company("0913000002") is not None
    assert await company("0913000003") not in (None, await company("0913000002"))
    assert report.operation_id is not None
    undone = await amis.operations.undo(SYSTEM, report.operation_id)
    assert undone.reverted == 8
    assert await card("0912000002") == ("Khách 2", "Lead", None, [])
    assert await amis.contacts.find(SYSTEM, "0913000002") == []
