"""The import service on fakes: progress reports, and a file read by a child process."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from domain.access import SYSTEM
from domain.errors import ImportRefused
from domain.model import Contact
from domain.ports import Conflict
from domain.services.imports import (
    ImportOptions,
    ImportProgress,
    ImportReport,
    ImportService,
    Phase,
)
from storage.import_batches import batches
from tests.unit.conftest import Clock
from tests.unit.fakes import FakeContacts, FakeDatabase

pytestmark = pytest.mark.usefixtures("amis")

ROWS = 10
# Ten data rows; the third has no phone, email or external id, so reading it rejects it.
FILE = (
    "name,phone,stage\n"
    + "".join(
        f"Khách {n},{'' if n == 3 else f'09120000{n:02d}'},Lead\n" for n in range(1, ROWS + 1)
    )
).encode()


def service(db: FakeDatabase, clock: Clock, **tuning: int) -> ImportService:
    return ImportService(
        db.uow,
        read_batches=batches,
        default_region="VN",
        zone=ZoneInfo("Asia/Ho_Chi_Minh"),
        clock=clock,
        **tuning,
    )


async def import_recording(imports: ImportService) -> tuple[ImportReport, list[ImportProgress]]:
    heard: list[ImportProgress] = []

    async def progress(step: ImportProgress) -> None:
        heard.append(step)

    report = await imports.run(SYSTEM, FILE, ImportOptions(), progress)
    return report, heard


async def test_progress_is_reported_every_so_many_rows_and_once_more_when_finishing(
    db: FakeDatabase, clock: Clock
) -> None:
    imports = service(db, clock, batch=2, progress_every=4)
    report, heard = await import_recording(imports)
    assert (report.created, report.rejected) == (9, 1)
    applying = [p for p in heard if p.phase is Phase.APPLYING]
    assert len(applying) >= 2
    assert all(later.applied - earlier.applied >= 4 for earlier, later in pairwise(applying))
    assert all(p.applied <= p.read <= ROWS for p in heard)
    assert heard[-1] == ImportProgress(Phase.FINISHING, ROWS, ROWS)


async def test_without_a_callback_nothing_is_reported_and_the_import_is_the_same(
    db: FakeDatabase, clock: Clock
) -> None:
    report = await service(db, clock, batch=2, progress_every=4).run(SYSTEM, FILE, ImportOptions())
    assert (report.created, report.rejected) == (9, 1)


async def test_a_file_read_by_a_child_process_imports_as_one_read_here(
    db: FakeDatabase, clock: Clock
) -> None:
    here = await service(db, clock, batch=3).run(SYSTEM, FILE, ImportOptions(dry_run=True))
    report, heard = await import_recording(service(db, clock, batch=3, child_from=0))
    assert (report.created, report.updated, report.unchanged) == (here.created, 0, 0)
    assert [(e.row, e.reason) for e in report.errors] == [(e.row, e.reason) for e in here.errors]
    assert heard[-1] == ImportProgress(Phase.FINISHING, ROWS, ROWS)


async def test_a_batch_whose_write_fails_refuses_the_import_and_nothing_is_written_after_it(
    db: FakeDatabase, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[int] = []

    async def colliding(self: FakeContacts, contacts: list[Contact], **_: Any) -> None:
        writes.append(len(contacts))
        await asyncio.sleep(0.01)  # the next batch is decided meanwhile
        raise Conflict("another contact took one of these identifiers meanwhile")

    monkeypatch.setattr(FakeContacts, "add_many", colliding)
    with pytest.raises(ImportRefused, match="Another contact took"):
        await service(db, clock, batch=3).run(SYSTEM, FILE, ImportOptions())
    assert len(writes) == 1  # the batches after the failed one were not written
    assert db.state.contacts == {}
