"""What a tap writes: the report rows of the contact it changed are brought in step once, at
commit, by the unit of work's report projection; and the report tables stay equal to a recount
after single writes of every kind, mixed, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bot.container import Services
from domain.access import SYSTEM
from domain.model import ActivityKind, Role
from domain.services.contacts import ContactDraft
from storage import report_projection
from tests.integration.reporting import assert_report_tables_in_step


@pytest.fixture
def recomputed(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The contact ids of every recomputation of report rows from history."""
    calls: list[list[int]] = []
    recompute = report_projection._recompute

    async def counted(session, ids, known, *, replace):  # type: ignore[no-untyped-def]
        calls.append(list(ids))
        await recompute(session, ids, known, replace=replace)

    monkeypatch.setattr(report_projection, "_recompute", counted)
    return calls


async def test_a_stage_move_recomputes_the_contacts_report_rows_once(
    services: Services, recomputed: list[list[int]]
) -> None:
    await services.stages.apply_template(SYSTEM, "amis")
    contact = await services.contacts.add(SYSTEM, ContactDraft(name="An", stage="Lead"))
    assert contact.id is not None
    sql = await services.contacts.stage_by_name("SQL")
    recomputed.clear()

    await services.contacts.set_stage(SYSTEM, contact.id, sql.id)

    assert recomputed == [[contact.id]]  # not once per statement: contact, history, commit
    await assert_report_tables_in_step(services)


async def test_mixed_single_writes_keep_the_report_tables_in_step(services: Services) -> None:
    await services.stages.apply_template(SYSTEM, "amis")
    agent = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north")
    other = await services.users.add(SYSTEM, "Bảo", Role.AGENT, team="north")
    contacts = services.contacts
    an = await contacts.add(
        SYSTEM, ContactDraft(name="An", phone="0912000001", stage="Lead", owner="Lan")
    )
    assert an.id is not None
    version = an.version
    for name in ("MQL", "SQL", "Customer"):
        moved = await contacts.set_stage(agent, an.id, (await contacts.stage_by_name(name)).id)
        version = moved.contact.version
        edited = await contacts.set_tags(SYSTEM, an.id, ["vip", name], expected_version=version)
        await contacts.log_activity(agent, an.id, ActivityKind.CALL, f"về {name}")
        await assert_report_tables_in_step(services)
    reassigned = await contacts.reassign(SYSTEM, an.id, other.id or 0)
    assert reassigned.version > edited.version
    await assert_report_tables_in_step(services)
