"""Use case: export the contacts a person may see as CSV, streamed batch by batch."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Protocol

from domain import exports
from domain.access import Scope
from domain.model import SavedView, Stage, User, utcnow
from domain.ports import ContactFilter, UnitOfWorkFactory
from domain.services.views import view_selection
from domain.stages import Pipeline

BATCH_SIZE = 2000


class TextSink(Protocol):
    """Where the CSV text goes: an open text file, a StringIO, stdout."""

    def write(self, text: str, /) -> object: ...


@dataclass(frozen=True, slots=True)
class ExportResult:
    rows: int
    columns: tuple[str, ...]


class ExportService:
    """Writes the actor's scope (an agent's own contacts, a manager's team's, everything for an
    admin), optionally narrowed, as CSV rows (`domain.exports`) to a text sink.

    Memory stays flat whatever the size: contacts are read in batches by id (keyset, `id >
    last`), each batch in a unit of work of its own — a short transaction, so that SQLite
    writers wait for one batch at most, never for the whole export — and written before the
    next is read. Stage, owner and company names are resolved per batch, never per row. The
    custom field columns are fixed before the first row; a key first set while the export runs
    is left out. Nothing is ever committed: exporting changes nothing.

    The file's encoding (UTF-8 with a BOM, so that Excel reads Vietnamese right) is the sink's:
    the caller opens it."""

    def __init__(
        self, uow: UnitOfWorkFactory, *, zone: tzinfo = UTC, batch_size: int = BATCH_SIZE
    ) -> None:
        self._uow = uow
        self._zone = zone
        self._batch_size = batch_size

    async def selection(self, stages: Sequence[str] = ()) -> ContactFilter:
        """The filter of an export narrowed to stages named (ignoring case and accents); an
        unknown name raises StageNotFound. No names: every contact of the scope.

        A saved view resolves to a ContactFilter with `view_selection`."""
        if not stages:
            return ContactFilter()
        async with self._uow(read_only=True) as uow:
            pipeline = Pipeline(await uow.stages.list())
            found = [pipeline.find(name) for name in stages]
        ids = tuple(dict.fromkeys(stage.id for stage in found if stage.id is not None))
        return ContactFilter(stage_ids=ids)

    async def view_selection(self, actor: User, view_id: int) -> tuple[SavedView, ContactFilter]:
        """The contacts of a saved view the actor may use, as of now."""
        async with self._uow(read_only=True) as uow:
            return await view_selection(uow, actor, view_id, self._zone, utcnow())

    async def export(
        self, actor: User, out: TextSink, where: ContactFilter | None = None
    ) -> ExportResult:
        """Writes the header and one row per contact of the actor's scope matching `where`, in
        id order; returns how many rows were written."""
        where = where or ContactFilter()
        scope = Scope.of(actor)
        async with self._uow(read_only=True) as uow:
            keys = exports.custom_keys_in_order(
                await uow.contacts.custom_field_keys(where, scope),
                defined=[field.key for field in await uow.fields.list()],
            )
            stages: dict[int, Stage] = {
                s.id: s for s in await uow.stages.list(include_archived=True) if s.id is not None
            }
        columns = exports.header(keys)
        writer = csv.writer(out)
        writer.writerow(columns)
        owners: dict[int, str] = {}
        rows = 0
        last = 0
        while True:
            async with self._uow(read_only=True) as uow:
                batch = await uow.contacts.batch_after(
                    where, scope, after_id=last, limit=self._batch_size
                )
                if not batch:
                    break
                missing = {c.owner_id for c in batch if c.owner_id and c.owner_id not in owners}
                if missing:
                    found = await uow.users.get_many(missing)
                    owners.update({user_id: user.name for user_id, user in found.items()})
                companies = await uow.companies.names({c.company_id for c in batch if c.company_id})
            writer.writerows(
                exports.row(
                    contact,
                    stage=stages.get(contact.stage_id) if contact.stage_id else None,
                    owner=owners.get(contact.owner_id) if contact.owner_id else None,
                    company=companies.get(contact.company_id) if contact.company_id else None,
                    custom_keys=keys,
                    zone=self._zone,
                )
                for contact in batch
            )
            rows += len(batch)
            last = max(contact.id or 0 for contact in batch)
            if len(batch) < self._batch_size:
                break
        return ExportResult(rows, tuple(columns))
