"""Bulk operations are undone exactly, on SQLite and PostgreSQL (ISSUE 5, part 3)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError

from bot.container import Services
from domain.access import SYSTEM
from domain.errors import InvalidInput
from domain.model import Role, Source, utcnow
from domain.services.contacts import ContactDraft
from domain.services.operations import Selection, UndoNeedsConfirmation
from storage import bulk
from tests.integration.reporting import assert_report_tables_in_step


async def amis_with(
    services: Services, stage: str, count: int, created_at: datetime | None = None
) -> list[int]:
    await services.stages.apply_template(SYSTEM, "amis")
    ids = []
    for n in range(count):
        contact = await services.contacts.add(
            SYSTEM, ContactDraft(name=f"Hội chợ {n}", stage=stage, created_at=created_at)
        )
        assert contact.id is not None
        ids.append(contact.id)
    return ids


async def snapshot(services: Services, ids: list[int]) -> list[tuple[object, ...]]:
    rows = []
    for contact_id in ids:
        card = await services.contacts.get(SYSTEM, contact_id)
        history = await services.contacts.history(SYSTEM, contact_id)
        rows.append(
            (
                card.stage.name if card.stage else None,
                card.contact.stage_entered_at,
                [(h.from_stage_id, h.to_stage_id, h.source) for h in history],
            )
        )
    return rows


async def test_undoing_a_stage_deletion_brings_the_stage_and_its_contacts_back(
    services: Services,
) -> None:
    ids = await amis_with(services, "MQL", 5)
    before = await snapshot(services, ids)
    funnel = [s.name for s in await services.stages.ordered()]
    deleted = await services.stages.delete(SYSTEM, "MQL", reassign_to="SQL")
    assert deleted.operation_id is not None
    [operation] = await services.operations.recent(SYSTEM)
    assert (operation.kind, operation.contacts) == ("reassign", 5)
    result = await services.operations.undo(SYSTEM, deleted.operation_id)
    assert (result.reverted, result.kept) == (5, 0)
    assert await snapshot(services, ids) == before
    assert [s.name for s in await services.stages.ordered()] == funnel  # in its place again
    with pytest.raises(InvalidInput, match="already"):
        await services.operations.undo(SYSTEM, deleted.operation_id)


async def test_contacts_changed_since_are_kept_and_the_rest_reverted_only_on_confirmation(
    services: Services,
) -> None:
    ids = await amis_with(services, "Lead", 4)
    operation = await services.operations.bulk_move(SYSTEM, Selection("hoi cho"), "SQL")
    assert operation.id is not None
    touched = ids[0]
    mql = await services.contacts.stage_by_name("MQL")
    await services.contacts.set_stage(SYSTEM, touched, mql.id)
    with pytest.raises(UndoNeedsConfirmation) as refused:
        await services.operations.undo(SYSTEM, operation.id)
    assert refused.value.changed == [touched]
    assert "Hội chợ 0" in refused.value.message
    stages = [(await services.contacts.get(SYSTEM, i)).stage.name for i in ids]  # type: ignore[union-attr]
    assert stages == ["MQL", "SQL", "SQL", "SQL"]  # nothing reverted yet
    result = await services.operations.undo(SYSTEM, operation.id, confirm_changed=True)
    assert (result.reverted, result.kept) == (3, 1)
    stages = [(await services.contacts.get(SYSTEM, i)).stage.name for i in ids]  # type: ignore[union-attr]
    assert stages == ["MQL", "Lead", "Lead", "Lead"]
    history = await services.contacts.history(SYSTEM, ids[1])
    assert [h.source for h in history] == [Source.MANUAL]


async def test_a_bulk_move_is_one_operation_with_a_history_row_per_contact(
    services: Services,
) -> None:
    ids = await amis_with(services, "Lead", 3)
    await services.contacts.add(SYSTEM, ContactDraft(name="Someone else", stage="Lead"))
    plan = await services.operations.plan_bulk_move(SYSTEM, Selection("hoi cho"))
    assert (plan.contacts, plan.by_stage) == (3, {"Lead": 3})
    with pytest.raises(Exception, match="reason"):
        await services.operations.bulk_move(SYSTEM, Selection("hoi cho"), "Disqualified")
    assert [(await services.contacts.get(SYSTEM, i)).stage.name for i in ids] == ["Lead"] * 3  # type: ignore[union-attr]
    operation = await services.operations.bulk_move(
        SYSTEM, Selection("hoi cho"), "Disqualified", reason="No budget"
    )
    for contact_id in ids:
        last = (await services.contacts.history(SYSTEM, contact_id))[-1]
        assert (last.source, last.reason, last.operation_id) == (
            Source.BULK,
            "No budget",
            operation.id,
        )


async def test_agents_see_and_undo_only_their_own_operations(services: Services) -> None:
    await amis_with(services, "Lead", 0)
    agent = await services.users.add(SYSTEM, "Lan", Role.AGENT, telegram_id=5)
    other = await services.users.add(SYSTEM, "Bình", Role.AGENT, telegram_id=6)
    for owner in (agent, other):
        await services.contacts.add(owner, ContactDraft(name=f"Khách {owner.name}", stage="Lead"))
    mine = await services.operations.bulk_move(agent, Selection("khach"), "MQL")
    assert mine.contacts == 1  # only Lan's own contact
    assert [op.id for op in await services.operations.recent(agent)] == [mine.id]
    assert await services.operations.recent(other) == []
    assert mine.id is not None
    with pytest.raises(Exception, match="no operation"):
        await services.operations.undo(other, mine.id)


async def index_definitions(services: Services) -> set[tuple[str, str]]:
    if services.engine.dialect.name == "sqlite":
        query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    else:
        query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
    async with services.engine.connect() as connection:
        return {(name, sql) for name, sql in await connection.exec_driver_sql(query)}


async def test_moving_most_contacts_rebuilds_their_indexes_as_they_were(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A move of a large share of the contacts creates the indexes of what it sets anew (on
    SQLite, bulk.indexes_rebuilt): same definitions after, data and reports exact, undoable."""
    monkeypatch.setattr(bulk, "REBUILD_MIN_ROWS", 1)
    # Created a month ago: the move goes at the end of their report rows (an UPDATE of them).
    ids = await amis_with(services, "MQL", 6, utcnow() - timedelta(days=30))
    await services.contacts.add(SYSTEM, ContactDraft(name="Khách cũ", stage="Lead"))
    indexes = await index_definitions(services)
    statements: list[str] = []
    event.listen(
        services.engine.sync_engine,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_: statements.append(statement),
    )
    before = await snapshot(services, ids)
    deleted = await services.stages.delete(SYSTEM, "MQL", reassign_to="SQL")
    assert deleted.moved == 6
    assert_rebuilt(services, statements)
    assert await index_definitions(services) == indexes
    await assert_report_tables_in_step(services)
    summaries = {s.stage.name: s.contacts for s in await services.stages.summaries()}
    assert (summaries["SQL"], summaries["Lead"]) == (6, 1)
    assert deleted.operation_id is not None
    statements.clear()
    await services.operations.undo(SYSTEM, deleted.operation_id)
    assert_rebuilt(services, statements)
    assert await index_definitions(services) == indexes
    assert await snapshot(services, ids) == before
    await assert_report_tables_in_step(services)


def assert_rebuilt(services: Services, statements: list[str]) -> None:
    """On SQLite, the statements dropped and created again the indexes a move rewrites."""
    dropped = [s.split()[2].strip('"') for s in statements if s.startswith("DROP INDEX")]
    created = [s.split()[2] for s in statements if s.startswith("CREATE INDEX")]
    assert sorted(dropped) == sorted(created)
    if services.engine.dialect.name == "sqlite":
        assert set(dropped) == {
            "ix_contacts_stage_id",
            "ix_contacts_last_activity_at",
            "ix_report_contacts_path",
            "ix_report_contacts_idle",
        }


async def test_a_move_failing_while_indexes_are_dropped_changes_nothing(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    if services.engine.dialect.name != "sqlite":
        pytest.skip("indexes are rebuilt on SQLite only")
    monkeypatch.setattr(bulk, "REBUILD_MIN_ROWS", 1)
    ids = await amis_with(services, "MQL", 4, utcnow() - timedelta(days=30))
    before = await snapshot(services, ids)
    indexes = await index_definitions(services)
    async with services.engine.begin() as connection:  # fails while the path index is dropped
        await connection.exec_driver_sql(
            "CREATE TRIGGER failing BEFORE UPDATE ON report_contacts "
            "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
        )
    with pytest.raises(DBAPIError, match="disk I/O error"):
        await services.stages.delete(SYSTEM, "MQL", reassign_to="SQL")
    async with services.engine.begin() as connection:
        await connection.exec_driver_sql("DROP TRIGGER failing")
    assert await index_definitions(services) == indexes
    assert await snapshot(services, ids) == before
    assert "MQL" in [s.stage.name for s in await services.stages.summaries()]
    assert await services.operations.recent(SYSTEM) == []
    await assert_report_tables_in_step(services)
