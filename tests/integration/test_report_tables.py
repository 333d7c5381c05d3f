"""The report tables stay exactly in step with the data through every kind of write the services
make — chat and command line, imports, bulk moves, stage deletion, undo — on SQLite and
PostgreSQL; and the reports follow a recategorization at once."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import BigInteger, literal, select, union_all

from bot.container import Services
from domain.access import SYSTEM
from domain.model import ActivityKind, Category, Role, Source, StageChange, utcnow
from domain.services.contacts import ContactDraft
from domain.services.events import EventDraft
from domain.services.imports import ImportOptions
from domain.services.operations import Selection
from storage.db import make_sessionmaker
from storage.report_projection import bucket_sql
from storage.report_rows import bucket
from storage.uow import SqlUnitOfWork
from tests.integration.reporting import (
    assert_report_tables_in_step,
    assert_reports_match_reference,
)


async def test_every_write_keeps_the_report_tables_equal_to_a_recount(services: Services) -> None:
    await services.stages.apply_template(SYSTEM, "amis")
    agent = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north")
    manager = await services.users.add(SYSTEM, "Mai", Role.MANAGER, team="north")
    other = await services.users.add(SYSTEM, "Bảo", Role.AGENT, team="south")
    contacts = services.contacts
    stage = contacts.stage_by_name
    checked = 0

    async def in_step() -> None:
        nonlocal checked
        await assert_report_tables_in_step(services)
        checked += 1

    an = await contacts.add(
        SYSTEM,
        ContactDraft(name="An", phone="0912000001", stage="Lead", owner="Lan", source="Zalo"),
    )
    binh = await contacts.add(SYSTEM, ContactDraft(name="Bình", email="binh@x.vn"))
    assert an.id is not None
    assert binh.id is not None
    await in_step()
    await contacts.set_stage(SYSTEM, an.id, (await stage("SQL")).id)
    await contacts.set_stage(SYSTEM, binh.id, (await stage("MQL")).id)
    await in_step()
    await contacts.log_activity(agent, an.id, ActivityKind.CALL, "Gọi lại sau")
    await in_step()
    await contacts.reassign(SYSTEM, binh.id, other.id or 0)
    await in_step()

    data = (
        "email,name,stage,owner,source,lost_reason,created_at,stage_changed_at\n"
        "binh@x.vn,Bình,Customer,Lan,Web,,,\n"
        "chi@x.vn,Chi,Unsubscribed,Mai,Hội chợ,Price,2024-01-05,2024-02-01\n"
        "dung@x.vn,Dũng,,,,,2024-01-06,\n"
    ).encode()
    imported = await services.imports.run(SYSTEM, data, ImportOptions())
    assert (imported.created, imported.updated, imported.rejected) == (2, 1, 0), imported.errors
    await in_step()
    await services.stages.recategorize(SYSTEM, "SQL", Category.WON)
    await in_step()
    assert imported.operation_id is not None
    await services.operations.undo(SYSTEM, imported.operation_id)
    await in_step()

    outcomes = await services.events.record_many(
        [
            ("web", EventDraft("form_submitted", phone="0912 000 111", name="Giang")),
            ("web", EventDraft("opportunity_created", email="binh@x.vn", source="Web")),
        ]
    )
    assert not [o for o in outcomes if isinstance(o, Exception)]
    await in_step()

    moved = await services.operations.bulk_move(SYSTEM, Selection(query="An"), "Loyal customer")
    await in_step()
    assert moved.id is not None
    await services.operations.undo(SYSTEM, moved.id)
    await in_step()
    await services.stages.recategorize(SYSTEM, "SQL", Category.OPEN)
    deleted = await services.stages.delete(SYSTEM, "SQL", reassign_to="Lead")
    await in_step()
    assert deleted.operation_id is not None
    await services.operations.undo(SYSTEM, deleted.operation_id)
    await in_step()
    await services.stages.delete(SYSTEM, "MQL", no_stage=True)
    await in_step()
    assert checked == 13

    today = date.today()
    period = services.reports.period(today - timedelta(days=800), today)
    await assert_reports_match_reference(services, [SYSTEM, manager, agent, other], period)


async def test_an_import_moving_contacts_at_many_different_times_keeps_the_tables_in_step(
    services: Services,
) -> None:
    await services.stages.apply_template(SYSTEM, "amis")
    people = range(1, 21)
    first = "email,stage,created_at\n" + "".join(f"p{n}@x.vn,Lead,2024-01-01\n" for n in people)
    assert (await services.imports.run(SYSTEM, first.encode(), ImportOptions())).created == 20
    # Each contact moves on a day of its own: more times than one statement each is worth.
    moves = "email,stage,stage_changed_at\n" + "".join(
        f"p{n}@x.vn,{'MQL' if n % 2 else 'Customer'},2024-02-{n:02d}\n" for n in people
    )
    report = await services.imports.run(SYSTEM, moves.encode(), ImportOptions())
    assert (report.updated, report.rejected) == (20, 0), report.errors
    await assert_report_tables_in_step(services)


async def test_recategorizing_a_stage_corrects_a_past_period_at_once(services: Services) -> None:
    await services.stages.apply_template(SYSTEM, "outbound")
    data = (
        b"email,stage,lost_reason,created_at,stage_changed_at\n"
        b"a@x.vn,Qualified,,2024-03-01,2024-03-05\n"
        b"b@x.vn,Qualified,,2024-03-02,2024-03-06\n"
        b"c@x.vn,Not interested,Price,2024-03-02,2024-03-07\n"
    )
    report = await services.imports.run(SYSTEM, data, ImportOptions())
    assert (report.created, report.rejected) == (3, 0), report.errors
    march = services.reports.period(date(2024, 3, 1), date(2024, 3, 31))
    before = await services.reports.conversion(SYSTEM, march)
    await services.stages.recategorize(SYSTEM, "Qualified", Category.WON)
    after = await services.reports.conversion(SYSTEM, march)
    assert (before.new, before.converted, before.junk, before.win_rate) == (3, 0, 1, 0.0)
    assert (after.converted, after.junk, after.win_rate) == (2, 1, 2 / 3)
    funnel = await services.reports.funnel(SYSTEM, march)
    assert [(s.name, s.reached) for s in funnel.steps] == [
        ("Potential", 2),
        ("Interested", 2),
        ("Won", 2),
    ]


async def test_a_bulk_move_behind_a_later_dated_history_row_is_placed_in_history_order(
    services: Services,
) -> None:
    """A move goes at the end of a contact's report rows only when it is the contact's latest
    row; a contact whose history has a row dated after it is recomputed in history order."""
    await services.stages.apply_template(SYSTEM, "amis")
    contacts = services.contacts
    early = await contacts.add(SYSTEM, ContactDraft(name="Sớm", phone="0912000002", stage="Lead"))
    late = await contacts.add(SYSTEM, ContactDraft(name="Muộn", phone="0912000003", stage="Lead"))
    assert late.id is not None
    lead, mql = await contacts.stage_by_name("Lead"), await contacts.stage_by_name("MQL")
    tomorrow = utcnow() + timedelta(days=1)
    async with SqlUnitOfWork(make_sessionmaker(services.engine)) as uow:
        await uow.history.add(StageChange(late.id, lead.id, mql.id, tomorrow, None, Source.IMPORT))
        await uow.commit()
    await assert_report_tables_in_step(services)
    moved = await services.operations.bulk_move(SYSTEM, Selection(query="Sớm"), "SQL")
    assert moved.contacts == 1
    moved = await services.operations.bulk_move(SYSTEM, Selection(query="Muộn"), "Customer")
    assert moved.contacts == 1
    await assert_report_tables_in_step(services)
    assert early.id is not None


async def test_events_moving_one_contact_twice_in_a_batch_keep_the_tables_in_step(
    services: Services,
) -> None:
    """A batch of events writes its history in one statement: a contact moved twice in it (a
    new lead, then revenue twice) has its report rows computed in history order."""
    await services.stages.apply_template(SYSTEM, "amis")
    await contacts_with_history(services)
    outcomes = await services.events.record_many(
        [
            ("web", EventDraft("form_submitted", phone="0912 000 222", name="Hà")),
            ("books", EventDraft("revenue_booked", phone="0912 000 222")),
            ("books", EventDraft("revenue_booked", phone="0912 000 222")),
            ("books", EventDraft("revenue_booked", email="old@x.vn")),
        ]
    )
    assert not [o for o in outcomes if isinstance(o, Exception)]
    await assert_report_tables_in_step(services)
    # Both revenue events converted: the new lead (once, though it entered won twice) and Cũ.
    period = services.reports.period(date(2025, 1, 1))  # up to today in the organisation's zone
    assert (await services.reports.conversion(SYSTEM, period)).converted == 2


async def contacts_with_history(services: Services) -> None:
    data = (
        b"email,name,stage,created_at,stage_changed_at\n"
        b"old@x.vn,C\xc5\xa9,SQL,2025-06-01,2025-07-01\n"
    )
    report = await services.imports.run(SYSTEM, data, ImportOptions())
    assert (report.created, report.rejected) == (1, 0), report.errors


async def test_length_buckets_are_the_same_in_the_database_as_in_python(
    services: Services,
) -> None:
    """Rows appended set-based get their buckets from SQL, the others from Python: the two must
    agree on every length, and buckets must never decrease as lengths grow (the medians rely on
    it)."""
    lengths = sorted({-5, *range(0, 300), *(2**k + d for k in range(8, 52) for d in (-1, 0, 1, 3))})
    in_python = [bucket(n) for n in lengths]
    assert in_python == sorted(in_python)
    values = union_all(*(select(literal(n, BigInteger).label("n")) for n in lengths)).subquery()
    async with services.engine.connect() as connection:
        in_sql = (
            await connection.execute(select(bucket_sql(values.c.n)).order_by(values.c.n))
        ).scalars()
        assert list(in_sql) == in_python
