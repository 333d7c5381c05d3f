"""Real `stagekeeper` processes killed with SIGKILL at random points of an import (read by a
child process), a bulk move, a stage deletion, the undo of an import and of a deletion, and a
digest run, on SQLite and PostgreSQL; after each kill the database is whole, the operation was
done entirely or not at all, the report tables equal a recount, the next command works, and no
morning message went out twice (tests/crash/harness.py says how). A few kills each here; more
with STAGEKEEPER_CRASH_KILLS, hundreds with `python -m bench.crash_soak`."""

from __future__ import annotations

import random

import pytest

from tests.crash.conftest import Crash
from tests.crash.harness import SCENARIOS, Tally
from tests.crash.summary import KILLS

KILLED = (
    "import-read-by-child",
    "bulk-move",
    "stage-delete",
    "undo-import",
    "undo-stage-delete",
    "digest",
)


@pytest.mark.parametrize("name", KILLED)
async def test_a_command_killed_anywhere_leaves_all_or_nothing_and_the_next_one_works(
    name: str, crash: Crash, crash_seed: int, request: pytest.FixtureRequest
) -> None:
    harness = crash.harness
    tally = Tally(crash_seed)
    rng = random.Random(f"{crash_seed}:{harness.store.kind}:{name}")
    try:
        await harness.kill_repeatedly(SCENARIOS[name], rng, KILLS, tally)
    finally:
        crash.lines.append(tally.summary())
        request.node.add_report_section("call", "crash", "\n".join(crash.lines))
        request.node.user_properties.append(
            ("crash", {"kills": tally.kills, "failures": len(tally.failures), "seed": crash_seed})
        )
    assert not tally.failures, "\n".join([tally.summary(), *tally.failures])
    assert tally.kills, f"every run ended before its kill: {tally.summary()}"
