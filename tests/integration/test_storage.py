"""Storage on SQLite and PostgreSQL: the schema from nothing, search, locking, bulk moves."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.container import Services, build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.errors import DuplicateContact, DuplicateStageName, TelegramIdTaken
from domain.model import Category, Contact, Role, Source, User
from domain.ports import Conflict, ContactWrite
from domain.services.contacts import ContactDraft
from domain.services.imports import ImportOptions
from domain.services.operations import Selection
from storage import bulk, migrate
from storage.db import CACHE_KIB, LARGE_MOVE_CACHE_KIB, make_engine, make_sessionmaker
from storage.migrate import alembic_config
from storage.models import StageChangeRow
from storage.uow import SqlUnitOfWork


async def test_migrations_create_the_schema_from_nothing_and_can_be_undone(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    engine = make_engine(url)
    assert await migrate.pending(engine)
    await migrate.upgrade(engine)
    assert not await migrate.pending(engine)
    async with engine.connect() as connection:
        tables = set(
            (
                await connection.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            ).scalars()
        )
    assert {"stages", "contacts", "stage_changes", "activities", "contact_search"} <= tables

    def downgrade(connection: object) -> None:
        config = alembic_config(url)
        config.attributes["connection"] = connection
        command.downgrade(config, "base")

    async with engine.begin() as connection:
        await connection.run_sync(downgrade)
    assert await migrate.pending(engine)
    await migrate.upgrade(engine)
    await engine.dispose()


async def test_sqlite_runs_with_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    async with engine.connect() as connection:
        pragmas = [
            (await connection.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "wal_autocheckpoint")
        ]
    await engine.dispose()
    # No commit copies the log into the database: the checkpointer's thread does.
    assert pragmas == ["wal", 1, 10_000, 0]


@pytest.mark.parametrize(("setting", "level"), [(None, 1), ("NORMAL", 1), ("FULL", 2)])
async def test_sqlite_commits_as_durably_as_the_setting_says(
    tmp_path: Path, setting: str | None, level: int
) -> None:
    environment = {"sqlite_synchronous": setting} if setting else {}
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}", **environment
    )
    services = build_services(settings)
    async with services.engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA synchronous"))).scalar() == level
    await services.close()


async def test_the_write_ahead_log_is_copied_into_the_database_by_a_thread_and_emptied_at_the_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE notes (body TEXT)"))
        # Some 1,600 pages of the log, more than SQLite's own checkpoint would let through.
        await connection.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
                "INSERT INTO notes SELECT printf('%.5000c', 'x') FROM n"
            )
        )
        page_size = (await connection.execute(text("PRAGMA page_size"))).scalar()
    # The checkpointer thread copies the log into the database file soon after the commit: some
    # 80 MB, which a machine busy writing elsewhere may take seconds for.
    deadline = time.monotonic() + 60
    while path.stat().st_size <= 20_000_000:
        assert time.monotonic() < deadline, "the log was not copied into the database in 60 s"
        await asyncio.sleep(0.05)
    assert page_size == 16_384
    await engine.dispose()
    assert not any(thread.name == "sqlite-checkpoint" for thread in threading.enumerate())
    # The last connection closed emptied the log.
    assert not (tmp_path / "log.db-wal").exists()


async def test_bulk_writes_leave_every_reference_whole_and_later_writes_are_checked_again(
    services: Services,
) -> None:
    await services.stages.apply_template(SYSTEM, "amis")
    data = (
        "email,name,stage,owner,tags\nan@x.vn,An,Khách VIP,Lan,Hội chợ\nbinh@x.vn,Bình,MQL,Mai,\n"
    ).encode()
    options = ImportOptions(create_stages=True, create_owners=True)
    imported = await services.imports.run(SYSTEM, data, options)
    assert (imported.created, imported.rejected) == (2, 0), imported.errors
    await services.operations.bulk_move(SYSTEM, Selection(query="Bình"), "SQL")
    await services.stages.delete(SYSTEM, "SQL", reassign_to="Lead")
    if services.engine.dialect.name == "sqlite":
        async with services.engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA foreign_key_check"))).all() == []
    # The same pooled connection, in an ordinary transaction: a dangling reference is refused.
    with pytest.raises(IntegrityError):
        async with services.engine.begin() as connection:
            await connection.execute(
                insert(StageChangeRow).values(
                    contact_id=10**9, at=datetime.now(UTC), source=Source.MANUAL.value
                )
            )


async def test_a_large_move_keeps_more_pages_for_its_own_transaction_only(
    services: Services,
) -> None:
    if services.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's page cache")

    async def cache_kib(session: AsyncSession) -> int:
        return -int(await session.scalar(text("PRAGMA cache_size")) or 0)

    async with services.engine.connect() as connection:  # one connection throughout
        session = AsyncSession(bind=connection)
        assert await cache_kib(session) == CACHE_KIB
        await bulk.keep_more_pages(session)
        assert await cache_kib(session) == LARGE_MOVE_CACHE_KIB
        await session.commit()
        assert await cache_kib(session) == CACHE_KIB  # the next transaction
        await session.close()


async def test_a_bulk_unit_of_work_writes_behind_in_order_and_reads_wait_for_the_writes(
    services: Services,
) -> None:
    sessions = make_sessionmaker(services.engine)

    def contact(n: int) -> Contact:
        return Contact(None, f"Khách {n}", phone=f"+8491200000{n}")

    async def count() -> int:
        return len(await uow.contacts.find_many(phones=phones, emails=[], external_ids=[]))

    phones = [f"+8491200000{n}" for n in range(4)]
    async with SqlUnitOfWork(sessions, bulk=True) as uow:
        await uow.contacts.add_many([contact(0), contact(1)])
        counted_between = uow.behind(count)  # after the first two, before the others
        await uow.contacts.add_many([contact(2), contact(3)])
        assert await counted_between == 2
        assert await count() == 4  # a read here waits for every write sent before it
        await uow.commit()
    # The next unit of work, ordinary, on the same pooled connection writes at once.
    async with SqlUnitOfWork(sessions) as uow:
        with pytest.raises(Conflict):
            await uow.contacts.add_many([contact(0)])


async def test_a_failed_write_behind_is_raised_and_nothing_of_the_unit_of_work_is_kept(
    services: Services,
) -> None:
    sessions = make_sessionmaker(services.engine)
    await services.contacts.add(SYSTEM, ContactDraft(name="An", phone="0912000001"))

    async def add_one_new_then_one_taken() -> None:
        async with SqlUnitOfWork(sessions, bulk=True) as uow:
            await uow.contacts.add_many([Contact(None, "Bình", phone="+84912000002")])
            # This may return before the database refuses it.
            await uow.contacts.add_many([Contact(None, "Copy of An", phone="+84912000001")])
            await uow.flush()
            await uow.commit()

    with pytest.raises(Conflict):
        await add_one_new_then_one_taken()
    assert await services.contacts.find(SYSTEM, "0912000002") == []
    [an] = await services.contacts.find(SYSTEM, "0912000001")
    assert an.contact.name == "An"


async def test_a_pipeline_keeps_no_outcome_of_a_step_once_it_is_done(services: Services) -> None:
    """An import's look-ups return a batch's contacts: a million rows' worth, kept by mistake,
    took 1.2 GB."""

    class Found:
        pass

    async def look_up() -> Found:
        return Found()

    async def nothing() -> None:
        return None

    async with SqlUnitOfWork(make_sessionmaker(services.engine), bulk=True) as uow:
        found = weakref.ref(await uow.behind(look_up))
        await uow.behind(nothing)
        gc.collect()
        assert found() is None


async def test_a_contact_round_trips_with_tags_amount_and_utc_times(services: Services) -> None:
    await services.stages.apply_template(SYSTEM, "amis")
    created = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    contact = await services.contacts.add(
        SYSTEM,
        ContactDraft(
            name="Lê Minh Châu",
            phone="0987 654 321",
            email="Chau@Example.vn",
            external_id="HS-42",
            company="Công ty ABC",
            source="Zalo",
            stage="MQL",
            value="15000000.50",
            tags=["VIP", "vip", "Hội chợ 2025"],
            custom_fields={"Ngành": "Bán lẻ", " Size ": " 50 ", "empty": " "},
            created_at=created,
        ),
    )
    assert contact.id is not None
    card = await services.contacts.get(SYSTEM, contact.id)
    assert card.company == "Công ty ABC"
    assert card.stage is not None
    assert card.stage.name == "MQL"
    stored = card.contact
    assert (stored.phone, stored.email, stored.external_id) == (
        "+84987654321",
        "chau@example.vn",
        "HS-42",
    )
    assert stored.value == Decimal("15000000.50")
    assert sorted(stored.tags) == ["Hội chợ 2025", "VIP"]
    assert stored.custom_fields == {"Ngành": "Bán lẻ", "Size": "50"}
    assert stored.created_at == created
    assert stored.created_at.tzinfo is not None
    [change] = await services.contacts.history(SYSTEM, contact.id)
    assert (change.to_stage_id, change.at, change.source) == (card.stage.id, created, Source.MANUAL)


async def test_the_database_refuses_a_duplicate_that_slips_past_the_check(
    services: Services, database_url: str
) -> None:
    """Two people adding the same phone at once: the unique index decides, and the loser is
    told which contact exists."""
    await services.contacts.add(SYSTEM, ContactDraft(name="First", phone="+84912000001"))
    sessions = make_sessionmaker(services.engine)
    async with SqlUnitOfWork(sessions) as uow:
        with pytest.raises(DuplicateContact) as refused:
            await uow.contacts.add(Contact(None, "Second", phone="+84912000001"), None)
    assert refused.value.field == "phone"
    assert len(await services.contacts.find(SYSTEM, "+84912000001")) == 1


async def test_live_stage_names_are_unique_in_the_database(services: Services) -> None:
    await services.stages.add(SYSTEM, "Demo", Category.OPEN)
    await services.stages.delete(SYSTEM, "Demo")
    await services.stages.add(SYSTEM, "Demo", Category.OPEN)
    sessions = make_sessionmaker(services.engine)
    async with SqlUnitOfWork(sessions) as uow:
        from domain.model import Stage

        with pytest.raises(DuplicateStageName):
            await uow.stages.add(Stage(None, "DEMO", Category.OPEN, 9))


async def test_search_ignores_case_and_diacritics_and_follows_renames(services: Services) -> None:
    await services.contacts.add(SYSTEM, ContactDraft(name="Nguyễn Văn An", company="Đại Phát"))
    await services.contacts.add(SYSTEM, ContactDraft(name="Nguyễn Thị Bình", phone="0912345678"))
    await services.contacts.add(SYSTEM, ContactDraft(name="Anna Smith", email="anna@x.com"))

    async def names(query: str) -> list[str | None]:
        return sorted(d.contact.name for d in await services.contacts.find(SYSTEM, query))

    assert await names("nguyen van an") == ["Nguyễn Văn An"]
    assert await names("NGUYỄN") == ["Nguyễn Thị Bình", "Nguyễn Văn An"]
    assert await names("an") == ["Anna Smith", "Nguyễn Văn An"]
    assert await names("dai phat") == ["Nguyễn Văn An"]
    assert await names("0912 345 678") == ["Nguyễn Thị Bình"]
    assert await names("+84912345678") == ["Nguyễn Thị Bình"]
    assert await names("ANNA@x.com") == ["Anna Smith"]
    assert await names("nguyen smith") == []
    assert await names("' OR 1=1 --") == []
    assert await names('"*') == []


async def test_search_respects_the_callers_scope(services: Services) -> None:
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=11)
    binh = await services.users.add(SYSTEM, "Bình", Role.AGENT, team="south", telegram_id=12)
    boss = await services.users.add(SYSTEM, "Boss", Role.MANAGER, team="north", telegram_id=13)
    for owner in (lan, binh):
        await services.contacts.add(owner, ContactDraft(name=f"Khách của {owner.name}"))

    async def seen_by(user: User) -> list[str | None]:
        return sorted(d.contact.name for d in await services.contacts.find(user, "khach"))

    assert await seen_by(lan) == ["Khách của Lan"]
    assert await seen_by(boss) == ["Khách của Lan"]
    assert await seen_by(SYSTEM) == ["Khách của Bình", "Khách của Lan"]


async def test_a_write_based_on_a_stale_version_is_not_applied(services: Services) -> None:
    contact = await services.contacts.add(SYSTEM, ContactDraft(name="Race"))
    assert contact.id is not None
    sessions = make_sessionmaker(services.engine)
    async with SqlUnitOfWork(sessions) as uow:
        stored = await uow.contacts.get(contact.id)
        assert stored is not None
        stored.name = "Winner"
        stored.version += 1
        assert await uow.contacts.update(stored, expected_version=1, changed=frozenset({"name"}))
        await uow.commit()
    async with SqlUnitOfWork(sessions) as uow:
        stale = Contact(contact.id, "Loser", version=2)
        assert not await uow.contacts.update(stale, expected_version=1, changed=frozenset({"name"}))
    assert (await services.contacts.get(SYSTEM, contact.id)).contact.name == "Winner"


async def test_a_bulk_write_leaves_out_only_the_contacts_changed_since_they_were_read(
    services: Services,
) -> None:
    ids = []
    for name in ("An", "Bình", "Chi"):
        added = await services.contacts.add(SYSTEM, ContactDraft(name=name, tags=["old"]))
        assert added.id is not None
        ids.append(added.id)
    sessions = make_sessionmaker(services.engine)
    async with SqlUnitOfWork(sessions) as uow:
        contacts = [await uow.contacts.get(i) for i in ids]
        writes = []
        for contact, seen in zip(contacts, (1, 0, 1), strict=True):  # Bình changed meanwhile
            assert contact is not None
            contact.name += " mới"
            contact.tags = ["new"]
            contact.version = seen + 1
            writes.append(ContactWrite(contact, seen, frozenset({"name", "tags"})))
        assert await uow.contacts.update_many(writes) == [ids[1]]
        await uow.commit()
    names = [(await services.contacts.get(SYSTEM, i)).contact for i in ids]
    assert [(c.name, c.tags) for c in names] == [
        ("An mới", ["new"]),
        ("Bình", ["old"]),
        ("Chi mới", ["new"]),
    ]
    assert [c.contact.id for c in await services.contacts.find(SYSTEM, "moi")] == [ids[2], ids[0]]


async def test_deleting_a_stage_moves_all_its_contacts_in_bulk_with_history(
    services: Services,
) -> None:
    await services.stages.apply_template(SYSTEM, "amis")
    ids = []
    for n in range(25):
        contact = await services.contacts.add(SYSTEM, ContactDraft(name=f"Lead {n}", stage="MQL"))
        ids.append(contact.id)
    result = await services.stages.delete(SYSTEM, "MQL", reassign_to="SQL")
    assert result.moved == 25
    counts = {s.stage.name: s.contacts for s in await services.stages.summaries()}
    assert counts["SQL"] == 25
    assert "MQL" not in counts
    for contact_id in ids:
        assert contact_id is not None
        history = await services.contacts.history(SYSTEM, contact_id)
        assert [(h.source, h.operation_id) for h in history][-1] == (
            Source.REASSIGN,
            result.operation_id,
        )
        assert (await services.contacts.get(SYSTEM, contact_id)).contact.version == 2


async def test_workers_starting_together_on_an_empty_database_all_find_one_admin(
    database_url: str,
) -> None:
    """Each `stagekeeper webhook` makes the configured admins admins at start; several starting
    at once must not fail on the one that created the admin first."""
    workers = [
        build_services(Settings(database_url=database_url, _env_file=None))  # type: ignore[call-arg]
        for _ in range(4)
    ]
    try:
        started = await asyncio.gather(*(w.users.ensure_admins([1001, 1002]) for w in workers))
        assert all(len(admins) == 2 for admins in started)
        people = await workers[0].users.everyone()
        assert sorted(p.telegram_id for p in people if p.role is Role.ADMIN) == [1001, 1002]
    finally:
        await asyncio.gather(*(w.close() for w in workers))


async def test_a_telegram_id_taken_meanwhile_is_a_refusal_and_the_unit_of_work_goes_on(
    services: Services,
) -> None:
    await services.users.ensure_admins([1001])
    async with SqlUnitOfWork(make_sessionmaker(services.engine)) as uow:
        with pytest.raises(TelegramIdTaken):
            await uow.users.add(User(None, "Twin", Role.AGENT, telegram_id=1001))
        other = await uow.users.add(User(None, "Lan", Role.AGENT, telegram_id=2003))
        await uow.commit()
    assert other.id is not None
    assert await services.users.by_telegram_id(2003) is not None
