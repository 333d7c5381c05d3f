"""What a tap writes: only the contact's columns that changed; the report rows of the contact are
brought in step once, at commit, by the unit of work's report projection; and the report tables
stay equal to a recount after single writes of every kind, mixed, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event

from bot.container import Services
from domain.access import SYSTEM
from domain.errors import StaleVersion
from domain.model import ActivityKind, FieldKind, Role
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


async def statements_of(services: Services, write: Callable[[], Awaitable[Any]]) -> list[str]:
    """The SQL the engine sends while `write` runs, upper-cased."""
    sent: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        sent.append(statement.upper())

    event.listen(services.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await write()
    finally:
        event.remove(services.engine.sync_engine, "before_cursor_execute", seen)
    return sent


def columns_set(statements: list[str]) -> list[list[str]]:
    """The columns each UPDATE of contacts sets."""
    return [
        sorted(re.findall(r"(\w+)\s*=", statement.split(" SET ", 1)[1].split(" WHERE ")[0]))
        for statement in statements
        if statement.lstrip().startswith("UPDATE CONTACTS ")
    ]


def tag_writes(statements: list[str]) -> list[str]:
    return [s for s in statements if "CONTACT_TAGS" in s and not s.lstrip().startswith("SELECT")]


async def test_a_one_field_write_updates_that_column_only(services: Services) -> None:
    await services.stages.apply_template(SYSTEM, "amis")
    await services.fields.add(SYSTEM, "Budget", FieldKind.NUMBER)
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north")
    contact = await services.contacts.add(
        SYSTEM, ContactDraft(name="An", company="Vinamilk", stage="Lead", tags=["vip"])
    )
    assert contact.id is not None
    contact_id, lan_id = contact.id, lan.id or 0
    sql = await services.contacts.stage_by_name("SQL")

    reassigned = await statements_of(
        services, lambda: services.contacts.reassign(SYSTEM, contact_id, lan_id)
    )
    assert columns_set(reassigned) == [["OWNER_ID", "UPDATED_BY_ID", "VERSION"]]
    # No search text (the name and company are as they were), hence no company, and no tags.
    assert not [s for s in reassigned if "FROM COMPANIES" in s]
    assert not tag_writes(reassigned)

    moved = await statements_of(
        services, lambda: services.contacts.set_stage(SYSTEM, contact_id, sql.id)
    )
    assert columns_set(moved) == [
        ["LAST_ACTIVITY_AT", "STAGE_ENTERED_AT", "STAGE_ID", "UPDATED_BY_ID", "VERSION"]
    ]

    version = (await services.contacts.card(SYSTEM, contact_id)).details.contact.version
    budget = await statements_of(
        services,
        lambda: services.contacts.set_field(
            SYSTEM, contact_id, "Budget", "1000", expected_version=version
        ),
    )
    assert columns_set(budget) == [["CUSTOM_FIELDS", "UPDATED_BY_ID", "VERSION"]]
    assert not tag_writes(budget)

    retagged = await statements_of(
        services,
        lambda: services.contacts.set_tags(
            SYSTEM, contact_id, ["vip", "hot"], expected_version=version + 1
        ),
    )
    assert columns_set(retagged) == [["UPDATED_BY_ID", "VERSION"]]
    assert tag_writes(retagged)
    card = await services.contacts.card(SYSTEM, contact_id)
    assert card.details.contact.tags == ["hot", "vip"]
    assert card.details.contact.owner_id == lan_id
    assert card.details.contact.custom_fields == {"Budget": "1000"}
    assert (await services.contacts.find(SYSTEM, "vinamilk"))[0].contact.id == contact_id
    await assert_report_tables_in_step(services)


async def test_a_stale_single_write_is_still_refused(services: Services) -> None:
    contact = await services.contacts.add(SYSTEM, ContactDraft(name="An", tags=["vip"]))
    assert contact.id is not None
    await services.contacts.set_tags(SYSTEM, contact.id, ["hot"], expected_version=1)
    with pytest.raises(StaleVersion):
        await services.contacts.set_tags(SYSTEM, contact.id, ["cold"], expected_version=1)
    card = await services.contacts.card(SYSTEM, contact.id)
    assert card.details.contact.tags == ["hot"]
