"""The set-based reads of an import (storage.bulk, SqlContactRepository.find_many) give what the
ORM gives, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Integer, String
from sqlalchemy.dialects import sqlite

from bot.container import Services
from domain.access import SYSTEM
from domain.model import FieldKind
from domain.services.contacts import ContactDraft
from domain.services.imports import ImportOptions
from storage import bulk
from storage.db import UTCDateTime


@pytest.fixture
async def amis(services: Services) -> Services:
    await services.stages.apply_template(SYSTEM, "amis")
    return services


async def test_contacts_found_in_bulk_are_the_contacts_read_one_by_one(amis: Services) -> None:
    await amis.fields.add(SYSTEM, "Hạng", FieldKind.TEXT)
    drafts = [
        ContactDraft(
            name="Nguyễn Văn An",
            phone="0912345678",
            email="an@x.vn",
            external_id="KH-1",
            company="ACME",
            source="Zalo",
            stage="Customer",
            value="15000000.50",
            tags=["VIP", "hội chợ"],
            custom_fields={"Hạng": "Vàng"},
            created_at=datetime(2024, 3, 1, 10, 20, 30, 123456, tzinfo=UTC),
        ),
        ContactDraft(name="Bình", email="binh@x.vn", stage="Lead"),
        ContactDraft(external_id="KH-3"),
    ]
    added = [await amis.contacts.add(SYSTEM, draft) for draft in drafts]
    async with amis.imports._uow() as uow:
        found = await uow.contacts.find_many(
            phones=["+84912345678", "+84900000000"],
            emails=["an@x.vn", "binh@x.vn"],
            external_ids=["KH-3", "KH-9"],
        )
        one_by_one = [await uow.contacts.get(c.id or 0) for c in added]
    assert sorted(found, key=lambda c: c.id or 0) == one_by_one
    [an] = [c for c in found if c.phone]
    assert an.tags == sorted(["VIP", "hội chợ"])
    assert an.created_at == datetime(2024, 3, 1, 10, 20, 30, 123456, tzinfo=UTC)
    assert an.created_at.tzinfo is UTC


def test_columns_null_in_every_row_of_a_bulk_write_are_written_as_null_on_sqlite() -> None:
    types = [Integer(), Integer(), String(), Integer()]
    rows = [(1, None, "a", None), (2, None, None, None)]
    parameters, nulls = bulk._parameters(rows, types, sqlite.dialect())
    assert (parameters, nulls) == ((1, "a", 2, None), (1, 3))
    marks = bulk._placeholders("qmark", len(rows), len(types), nulls=nulls)
    assert marks == "(?, NULL, ?, NULL), (?, NULL, ?, NULL)"
    numbered = bulk._placeholders("numeric_dollar", 2, 3, ("INT", "TEXT", "INT"), (1,))
    assert (
        numbered
        == "(CAST($1 AS INT), NULL, CAST($2 AS INT)), (CAST($3 AS INT), NULL, CAST($4 AS INT))"
    )


@pytest.mark.parametrize(
    "stored",
    [
        "2024-03-01 10:20:30.123456",
        "2024-03-01 10:20:30",
        "2024-03-01",
        "2024-03-01T10:20:30.5",
        "2024-03-01 10:20:30+07:00",
        "2024-03-01 10:20:30Z",
        None,
    ],
)
def test_a_timestamp_sqlite_keeps_reads_back_as_the_orm_reads_it(stored: str | None) -> None:
    dialect = sqlite.dialect()
    orm = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert orm is not None
    fast = bulk._sqlite_utc(stored)
    assert fast == orm(stored)
    assert fast is None or fast.tzinfo is UTC


async def test_the_latest_stage_change_times_read_in_bulk_are_the_latest_changes(
    amis: Services,
) -> None:
    added = [
        await amis.contacts.add(
            SYSTEM, ContactDraft(name=f"Khách {n}", phone=f"091234567{n}", stage="Lead")
        )
        for n in range(3)
    ]
    [mql] = [s for s in await amis.stages.ordered() if s.name == "MQL"]
    await amis.contacts.set_stage(
        SYSTEM, added[0].id or 0, mql.id, at=datetime.now(UTC) + timedelta(seconds=1)
    )
    ids = [c.id or 0 for c in added]
    async with amis.imports._uow() as uow:
        times = await uow.history.latest_times([*ids, 999_999])
        latest = [await uow.history.latest(i) for i in ids]
    assert times == {i: change.at for i, change in zip(ids, latest, strict=True) if change}
    assert all(at.tzinfo is UTC for at in times.values())


async def test_an_import_refuses_a_move_dated_before_the_contacts_latest_stage_change(
    amis: Services,
) -> None:
    await amis.contacts.add(SYSTEM, ContactDraft(name="An", phone="0912345678", stage="Lead"))
    data = b"phone,stage,stage_changed_at\n0912345678,MQL,2001-01-01\n"
    report = await amis.imports.run(SYSTEM, data, ImportOptions())
    assert (report.updated, report.rejected) == (0, 1)
    assert "before the contact's latest stage change" in report.errors[0].reason
