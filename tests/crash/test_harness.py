"""The crash checks have teeth: what a kill must never leave — an operation half done, report
tables out of step, a damaged search index, a morning message sent twice — each made on
purpose (without a kill) and found. On SQLite, whose seeded database the kill tests share."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from tests.crash.conftest import Crash
from tests.crash.harness import SCENARIOS, SqliteStore, Tally, integrity_problems

pytestmark = pytest.mark.parametrize("crash_place", ["sqlite"], indirect=True)


def execute(store: object, statement: str) -> None:
    """`statement` on the database the checks look at."""
    assert isinstance(store, SqliteStore)
    with closing(sqlite3.connect(store.path("run"))) as connection:
        connection.execute(statement)
        connection.commit()


async def test_an_operation_done_in_part_is_found(crash: Crash) -> None:
    harness = crash.harness
    start = await harness.start(SCENARIOS["bulk-move"])  # of everyone named Trần
    await harness.store.clone(start.database, "run")
    half = ("bulk-move", "Trần Văn", "SQL", "--reason", "crash test")  # some of them
    await harness.runner.run(half, harness.store.url("run"))
    failures = await harness.check_operation(start, Tally(0), killed=True)
    assert any(failure.startswith("partly done: ") for failure in failures), failures


async def test_report_tables_out_of_step_are_found(crash: Crash) -> None:
    harness = crash.harness
    start = await harness.start(SCENARIOS["stage-delete"])
    await harness.store.clone(start.database, "run")
    execute(harness.store, "DELETE FROM report_contacts WHERE contact_id = 7")
    failures = await harness.check_operation(start, Tally(0), killed=True)
    assert any("report_contacts: 0 rows not in the recount, 1 missing" in f for f in failures)


async def test_a_damaged_search_index_is_found(crash: Crash) -> None:
    harness = crash.harness
    start = await harness.start(SCENARIOS["stage-delete"])
    await harness.store.clone(start.database, "run")
    # An external-content FTS5 table's 'delete' takes the values to remove from the index on
    # trust: wrong ones leave the index out of step with the contacts.
    execute(
        harness.store,
        "INSERT INTO contact_search(contact_search, rowid, search_text) "
        "VALUES ('delete', 7, 'no such words')",
    )
    problems = await integrity_problems(harness.store, "run")
    assert any("FTS5 integrity-check of contact_search" in p for p in problems), problems


async def test_a_morning_message_sent_twice_is_found(crash: Crash) -> None:
    harness = crash.harness
    start = await harness.start(SCENARIOS["digest"])
    telegram = await harness.started_telegram()
    await harness.store.clone(start.database, "run")
    before = len(await telegram.sent())
    await harness.runner.run(start.command, harness.store.url("run"))
    execute(harness.store, "DELETE FROM deliveries")  # as if nothing had been claimed
    failures = await harness.check_digest(start, telegram, before, Tally(0), killed=True)
    assert any("sent twice, by the killed run and the next" in f for f in failures), failures
