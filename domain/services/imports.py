"""Importing a CSV or XLSX file: match each row to a contact by phone, email or external id, then
add, update or both, in one transaction, every rule applied as on any other path; undoable.
A dry run does all of it and rolls back, so its counts are exactly what the import would do."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from domain import fields
from domain.access import require_role
from domain.errors import DomainError, ImportRefused, InvalidInput
from domain.fields import InvalidFieldValue
from domain.imports import CUSTOM_PREFIX, IDENTIFIERS, ImportRow, RowError, error_report, parse
from domain.model import (
    Category,
    Contact,
    CustomFieldDef,
    Operation,
    OperationItem,
    Role,
    Source,
    Stage,
    StageChange,
    User,
    utcnow,
)
from domain.ports import (
    Clock,
    Conflict,
    ContactWrite,
    ReadBatches,
    UnitOfWork,
    UnitOfWorkFactory,
)
from domain.stages import stage_name
from domain.text import fold, search_text
from domain.transitions import Move, Policy, plan_move
from domain.workbooks import DEFAULT_LIMITS, FileLimits

BATCH = 5000  # rows matched and written together
PROGRESS_EVERY = 10_000  # rows between two progress reports (a chat shows them every 2 s)
FOLDED_MAX = 65_536  # tags folded and remembered, per import
YIELD_EVERY = 64  # rows decided between two chances for the database thread to go on
CHILD_FROM = 8 * 1024 * 1024  # bytes of file from which another process reads it
# The scalar fields an import may change, and how a contact's value is kept in a before-image.
PROFILE = ("name", "phone", "email", "external_id", "source", "value", "owner_id", "company_id")
MOVED = ("stage_id", "stage_entered_at", "last_activity_at")  # the fields a stage change sets


class Mode(enum.StrEnum):
    ADD = "add"
    UPDATE = "update"
    UPSERT = "upsert"


@dataclass(frozen=True, slots=True)
class ImportOptions:
    mode: Mode = Mode.UPSERT
    match: tuple[str, ...] = IDENTIFIERS
    mapping: dict[str, str] = field(default_factory=dict)
    create_stages: bool = False
    create_owners: bool = False
    dry_run: bool = False


@dataclass(slots=True)
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[RowError] = field(default_factory=list)
    stages_created: list[str] = field(default_factory=list)
    owners_created: list[str] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)
    # Columns read as a defined custom field by their header: (header, field name).
    field_columns: list[tuple[str, str]] = field(default_factory=list)
    # Columns read as a built-in field although a custom field has that name too:
    # (header, built-in field, custom field name).
    shadowed_columns: list[tuple[str, str, str]] = field(default_factory=list)
    operation_id: int | None = None
    dry_run: bool = False
    header: list[str] = field(default_factory=list)
    sheet: str | None = None  # a workbook's sheet that was read
    other_sheets: list[str] = field(default_factory=list)  # and those that were not

    @property
    def rejected(self) -> int:
        return len(self.errors)

    def error_csv(self) -> bytes:
        return error_report(self.errors, self.header)


class Phase(enum.StrEnum):
    APPLYING = "applying"  # rows are read, matched and written, batch after batch
    FINISHING = "finishing"  # every row is applied; committing (or, for a dry run, rolling back)


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """How far an import has come: data rows read from the file (rejected ones included) and,
    of those, the rows applied so far (created, updated, found unchanged or rejected)."""

    phase: Phase
    read: int
    applied: int


Progress = Callable[[ImportProgress], Awaitable[None]]


class RowRefused(Exception):
    def __init__(self, column: str | None, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


class ImportService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        read_batches: ReadBatches,
        default_region: str,
        zone: ZoneInfo,
        policy: Policy | None = None,
        clock: Clock = utcnow,
        batch: int = BATCH,
        progress_every: int = PROGRESS_EVERY,
        child_from: int = CHILD_FROM,
        limits: FileLimits = DEFAULT_LIMITS,
    ) -> None:
        self._uow = uow
        self._read_batches = read_batches
        self._region = default_region
        self._zone = zone
        self._policy = policy or Policy()
        self._clock = clock
        self._batch = batch
        self._progress_every = progress_every
        self._child_from = child_from  # bytes of file from which another process reads it
        self._limits = limits

    async def run(
        self,
        actor: User,
        data: bytes,
        options: ImportOptions,
        progress: Progress | None = None,
    ) -> ImportReport:
        """Import a file (admins). A broken file raises ImportRefused and changes nothing.
        `progress`, when given, hears how far the import has come every `progress_every` rows
        or so, and once more when the last row is applied."""
        require_role(actor, Role.ADMIN)
        now = self._clock()
        # Headers naming a custom field are read as that field.
        async with self._uow(read_only=True) as uow:
            defined = [(f.key, f.name) for f in await uow.fields.list()]
        parse_options: dict[str, Any] = {
            "mapping": options.mapping,
            "default_region": self._region,
            "zone": self._zone,
            "now": now,
            "match": options.match,
            "defined": defined,
            "limits": self._limits,
        }
        parsed = parse(data, **parse_options)
        report = ImportReport(
            unknown_columns=parsed.unknown_columns,
            field_columns=parsed.field_columns,
            shadowed_columns=parsed.shadowed_columns,
            dry_run=options.dry_run,
            header=parsed.header,
            sheet=parsed.sheet,
            other_sheets=parsed.other_sheets,
        )
        in_child = len(data) >= self._child_from
        async with (
            self._uow(bulk=True) as uow,
            self._read_batches(
                data, parsed, parse_options, size=self._batch, in_child=in_child
            ) as stream,
        ):
            run = _Run(uow, actor, options, self._policy, now, report, parsed.columns)
            await run.prepare()
            reported = read = 0
            decided: _Batch | None = None
            incoming = aiter(stream)
            try:
                # The database works in its own thread (SQLite) or server while this one works
                # out what the rows do. In the order the database gets them: batch N+1 is
                # looked up, then batch N-1 written, while batch N is decided. (A row matching
                # a contact that an earlier batch changes is refused all the same: `_Run.changed`;
                # and no row shares an identifier with an earlier one.)
                batch = await anext(incoming, None)
                if batch is not None:
                    run.look_up_next(batch.rows)
                while batch is not None:
                    found = await run.looked_up()
                    following = await anext(incoming, None)
                    if following is not None:
                        run.look_up_next(following.rows)
                    if decided is not None:
                        await run.write(decided)
                    decided = await run.decide(batch.rows, found, read=batch.read)
                    read = batch.read
                    if progress is not None and run.applied - reported >= self._progress_every:
                        reported = run.applied
                        await progress(ImportProgress(Phase.APPLYING, read, run.applied))
                    batch = following
                if decided is not None:
                    await run.write(decided)
                await run.written()
                await uow.flush()
            except Conflict:
                await run.abandon()
                raise ImportRefused(
                    "Another contact took one of the file's phones, emails or external ids "
                    "during the import; import the file again."
                ) from None
            except BaseException:
                await run.abandon()
                raise
            if progress is not None:
                await progress(ImportProgress(Phase.FINISHING, read, run.applied))
            report.errors = sorted([*parsed.errors, *report.errors], key=lambda e: e.row)
            if options.dry_run:
                return report  # leaving the unit of work rolls everything back
            await run.finish()
            await uow.commit()
        report.operation_id = run.operation.id if run.operation else None
        return report


@dataclass(slots=True)
class _Found:
    """What the database holds for a batch of rows."""

    index: dict[tuple[str, str], Contact]  # contacts by each of their identifiers
    latest: dict[int, datetime | None]  # when contacts likely to move last changed stage
    # The contact each row matches (or why it is refused), row by row, when any were found.
    matched: list[Contact | RowRefused | None] | None = None


@dataclass(slots=True)
class _Batch:
    """What a batch of rows writes, decided row by row and then written set-based."""

    read: int  # data rows read from the file up to this batch's last
    new: list[_NewContact] = field(default_factory=list)
    changes: list[_Change] = field(default_factory=list)
    # Contacts that name a company not created yet, by its name as written.
    new_companies: list[tuple[Contact, str]] = field(default_factory=list)


@dataclass(slots=True)
class _NewContact:
    row: int
    contact: Contact
    reason: str | None  # the lost reason of its first stage, when lost
    # What search looks in, worked out while the batch before is written rather than in the
    # writing itself, which the database waits for.
    search_text: str


@dataclass(slots=True)
class _Change:
    row: int
    write: ContactWrite
    item: OperationItem  # the contact as it was, for undo
    move: StageChange | None


class _Run:
    """One import in progress, inside one unit of work."""

    def __init__(
        self,
        uow: UnitOfWork,
        actor: User,
        options: ImportOptions,
        policy: Policy,
        now: datetime,
        report: ImportReport,
        columns: dict[str, str],
    ) -> None:
        self.uow = uow
        self.actor = actor
        self.options = options
        self.policy = policy
        self.now = now
        self.report = report
        self.headers = {name: header for header, name in reversed(columns.items())}  # first
        self.stages: dict[str, Stage] = {}  # by folded name
        self.all_stages: dict[int, Stage] = {}
        self.owners: dict[str, User] = {}  # by folded name and by Telegram id
        # A million rows name a few stages, owners and tags: each spelling is folded once.
        self.stages_as_written: dict[str, Stage] = {}
        self.owners_as_written: dict[str, User] = {}
        self.folded: dict[str, str] = {}
        self.first_moves: dict[tuple[int | None, str | None], Move | None] = {}
        self.companies: dict[str, int] = {}  # ids by the name as written
        self.changed: dict[int, int] = {}  # contact id -> the row that changed it
        self.operation: Operation | None = None
        self.writing: asyncio.Task[None] | None = None  # the batch being written
        self.looking: Awaitable[_Found] | None = None  # the next batch being looked up
        self.applied = 0  # data rows read up to the last batch written
        self.fields: list[CustomFieldDef] = []
        self.match_all = set(options.match) == set(IDENTIFIERS)

    async def prepare(self) -> None:
        live = await self.uow.stages.list()
        self.stages = {fold(s.name): s for s in live}
        self.all_stages = {
            s.id: s for s in await self.uow.stages.list(include_archived=True) if s.id
        }
        self.fields = await self.uow.fields.list()
        for user in await self.uow.users.list():
            self.owners.setdefault(fold(user.name), user)
            if user.telegram_id is not None:
                self.owners.setdefault(str(user.telegram_id), user)
        self.operation = await self.uow.operations.add(
            Operation(None, "import", self.actor.id, "Import", created_at=self.now)
        )

    def look_up_next(self, rows: Sequence[ImportRow]) -> None:
        """Starts looking the rows up, after the writes asked for so far."""
        self.looking = self.uow.behind(lambda: self.look_up(rows))

    async def looked_up(self) -> _Found:
        """What `look_up_next` found."""
        assert self.looking is not None
        looking, self.looking = self.looking, None
        return await looking

    async def look_up(self, rows: Sequence[ImportRow]) -> _Found:
        """The contacts the rows may match, their companies and when those likely to move last
        changed stage, read while nothing is being written."""
        # Every identifier is looked up, matched on or not: one that belongs to another contact
        # than the row's must refuse the row rather than break a unique index.
        existing = await self.uow.contacts.find_many(
            phones=[r.phone for r in rows if r.phone],
            emails=[r.email for r in rows if r.email],
            external_ids=[r.external_id for r in rows if r.external_id],
        )
        index: dict[tuple[str, str], Contact] = {}
        for contact in existing:
            if contact.phone:
                index["phone", contact.phone] = contact
            if contact.email:
                index["email", contact.email] = contact
            if contact.external_id:
                index["external_id", contact.external_id] = contact
        await self._known_companies(rows)
        if not index:
            return _Found(index, {})
        # What each row matches depends on the rows and the index alone: worked out once here
        # for the batch, for `_latest_stage_changes` and then for `decide`.
        matched = [self._matched(row, index) for row in rows]
        return _Found(index, await self._latest_stage_changes(rows, matched), matched)

    async def decide(self, rows: Sequence[ImportRow], found: _Found, *, read: int) -> _Batch:
        """What each row does, in memory; while the batch before is being written, any use of
        the database (a new stage or owner) waits for that to end."""
        batch = _Batch(read=read)
        matched = found.matched
        for count, row in enumerate(rows, start=1):
            try:
                match = None if matched is None else matched[count - 1]
                if isinstance(match, RowRefused):
                    raise match
                await self._row(row, match, found, batch)
            except RowRefused as refused:
                self.report.errors.append(RowError(row.row, refused.column, refused.reason))
            except DomainError as error:
                self.report.errors.append(RowError(row.row, None, error.message))
            if count % YIELD_EVERY == 0:
                # Lets the database thread take Python's lock to go on with the batch before.
                await asyncio.sleep(0)
        return batch

    async def write(self, batch: _Batch) -> None:
        """Starts writing the batch, in the background once the companies it names exist."""
        await self.written()
        if batch.new_companies:
            names = {name for _, name in batch.new_companies}
            self.companies.update(await self.uow.contacts.company_ids(names, create=True))
            for contact, name in batch.new_companies:
                contact.company_id = self.companies[name]
        self.writing = asyncio.create_task(self._write(batch))

    async def written(self) -> None:
        """Waits until the batch being written is sent to the database (which runs what it is
        sent in order: a read after it waits for it)."""
        writing, self.writing = self.writing, None
        if writing is not None:
            await writing

    async def quiet(self) -> None:
        """Waits until nothing else uses the unit of work: the batch being written is sent, and
        the next batch looked up (its outcome is for `looked_up`). Storage may begin a
        savepoint (adding a stage, an owner), which no other task's reads may run beside."""
        await self.written()
        if self.looking is not None:
            await asyncio.wait([asyncio.ensure_future(self.looking)])

    async def abandon(self) -> None:
        """After a failure, waits for the batch being written and the look-up: the unit of work
        must not end under them, and their own failures, if any, are not the ones to report."""
        for step in (self.writing, self.looking):
            if step is not None:
                with contextlib.suppress(Exception):
                    await step
        self.writing = self.looking = None

    async def _known_companies(self, rows: Sequence[ImportRow]) -> None:
        unknown = {r.company for r in rows if r.company and r.company not in self.companies}
        if unknown:
            self.companies.update(await self.uow.contacts.company_ids(unknown, create=False))

    async def _latest_stage_changes(
        self, rows: Sequence[ImportRow], matched: Sequence[Contact | RowRefused | None]
    ) -> dict[int, datetime | None]:
        """When the contacts that rows are likely to move last changed stage, in one query: a
        move may not be dated before it. Rows are not applied yet, so an earlier row of the
        batch may still change what a later one matches; `_latest` looks up any it missed."""
        likely: set[int] = set()
        if self.options.mode is Mode.ADD:
            return {}
        for row, contact in zip(rows, matched, strict=True):
            if row.stage is None:
                continue
            if not isinstance(contact, Contact) or contact.id is None:
                continue
            stage = self._known_stage(row.stage)
            if stage is None or stage.id != contact.stage_id:
                likely.add(contact.id)
        if not likely:
            return {}
        found_times = await self.uow.history.latest_times(likely)
        return {contact_id: found_times.get(contact_id) for contact_id in likely}

    async def _latest(self, contact_id: int, latest: dict[int, datetime | None]) -> datetime | None:
        if contact_id in latest:
            return latest[contact_id]
        await self.quiet()
        change = await self.uow.history.latest(contact_id)
        return change.at if change else None

    async def _write(self, batch: _Batch) -> None:
        """The batch's changes, then its new contacts (so an identifier an update frees is free),
        their history rows and what undo needs, in a few set-based statements."""
        changes = batch.changes
        if changes:
            # In its place among the look-ups, not beside one: it may begin a savepoint.
            writes = [c.write for c in changes]
            stale = set(await self.uow.behind(lambda: self.uow.contacts.update_many(writes)))
            if stale:
                for change in changes:
                    if change.item.contact_id in stale:
                        self.report.errors.append(
                            RowError(
                                change.row,
                                None,
                                "the contact changed during the import; import it again",
                            )
                        )
                changes = [c for c in changes if c.item.contact_id not in stale]
        operation_id = self._operation_id()
        staged = [new for new in batch.new if new.contact.stage_id is not None]
        # Asked first: the writes below run behind this code (UnitOfWork.flush), and a read
        # would wait for them.
        change_ids = await self.uow.history.new_ids(len(staged))
        if batch.new:
            await self.uow.contacts.add_many(
                [n.contact for n in batch.new],
                operation_id=operation_id,
                search_texts=[n.search_text for n in batch.new],
            )
        history = []
        actor_id, source = self.actor.id, Source.IMPORT
        for new, change_id in zip(staged, change_ids, strict=True):
            contact = new.contact
            assert contact.id is not None
            assert contact.stage_entered_at is not None
            history.append(
                StageChange(
                    contact.id,
                    None,
                    contact.stage_id,
                    contact.stage_entered_at,
                    actor_id,
                    source,
                    new.reason,
                    operation_id,
                    change_id,
                )
            )
        history += [change.move for change in changes if change.move is not None]
        await self.uow.history.add_many(history)
        await self.uow.operations.add_items([change.item for change in changes])
        self.report.created += len(batch.new)
        self.report.updated += len(changes)
        self.applied = batch.read

    async def finish(self) -> None:
        assert self.operation is not None
        assert self.operation.id is not None
        report = self.report
        if not report.created and not report.updated:
            await self.uow.operations.forget(self.operation.id)  # nothing to undo
            self.operation = None
            return
        self.operation.contacts = report.created + report.updated
        self.operation.description = f"Import: {report.created} created, {report.updated} updated"
        await self.uow.operations.update(self.operation)

    def _matched(
        self, row: ImportRow, index: dict[tuple[str, str], Contact]
    ) -> Contact | RowRefused | None:
        """`_match`'s answer, a refusal included. The common row, whose identifiers all name
        the same contact or none, matched by every identifier, is answered straight away."""
        phone, email, external_id = row.phone, row.email, row.external_id
        by_phone = index.get(("phone", phone)) if phone is not None else None
        by_email = index.get(("email", email)) if email is not None else None
        by_external_id = index.get(("external_id", external_id)) if external_id else None
        contact = by_phone or by_email or by_external_id
        if contact is None:
            return None
        if (
            self.match_all
            and contact.id is not None
            and (by_phone is None or by_phone is contact)
            and (by_email is None or by_email is contact)
            and (by_external_id is None or by_external_id is contact)
        ):
            return contact
        try:
            return self._match(row, index)
        except RowRefused as refused:
            return refused

    def _match(self, row: ImportRow, index: dict[tuple[str, str], Contact]) -> Contact | None:
        """The contact the row matches on the identifiers the import matches by, if any.
        Refuses a row that matches two contacts, and a row whose identifier the import does not
        match by belongs to another contact: writing it would make two contacts share it."""
        if not index:
            return None
        matched: dict[int, tuple[str, str]] = {}
        taken: tuple[str, str, Contact] | None = None
        for name, value in (
            ("phone", row.phone),
            ("email", row.email),
            ("external_id", row.external_id),
        ):
            if value is None:
                continue
            contact = index.get((name, value))
            if contact is None or contact.id is None:
                continue
            if name in self.options.match:
                matched.setdefault(contact.id, (name, value))
            elif taken is None:
                taken = (name, value, contact)
        if len(matched) > 1:
            found = ", ".join(f"#{cid} by {_label(key[0])}" for cid, key in matched.items())
            raise RowRefused(None, f"matches two contacts ({found}); fix the file or merge them")
        contact = index[next(iter(matched.values()))] if matched else None
        if taken is not None and taken[2] is not contact:
            name, value, other = taken
            matched_by = ", ".join(_label(f) for f in self.options.match)
            raise RowRefused(
                self.headers.get(name),
                f"the {_label(name)} {value} is contact #{other.id}'s, and the import matches "
                f"by {matched_by} only",
            )
        return contact

    async def _row(
        self, row: ImportRow, contact: Contact | None, found: _Found, batch: _Batch
    ) -> None:
        if row.custom_fields and self.fields:
            row.custom_fields = self._canonical_fields(row.custom_fields)
        # Stages and owners as written in the file, once known, without a coroutine a row.
        stage = None if row.stage is None else self.stages_as_written.get(row.stage)
        if stage is None and row.stage is not None:
            stage = await self._stage(row.stage)
        owner = None if row.owner is None else self.owners_as_written.get(row.owner)
        if owner is None and row.owner is not None:
            owner = await self._owner(row.owner)
        if contact is None:
            if self.options.mode is Mode.UPDATE:
                raise RowRefused(None, "no contact matches it (update only)")
            self._create(row, stage, owner, batch)
            return
        if self.options.mode is Mode.ADD:
            self.report.unchanged += 1
            return
        assert contact.id is not None
        earlier = self.changed.get(contact.id)
        if earlier is not None:
            raise RowRefused(
                None, f"matches contact #{contact.id}, which row {earlier} already changed"
            )
        await self._update(row, contact, stage, owner, found.latest, batch)

    def _canonical_fields(self, values: dict[str, str]) -> dict[str, str]:
        """Defined fields in their one spelling (`vang` → `Vàng`, `1.500.000` → `1500000`);
        a value a field refuses rejects the row, naming the column."""
        try:
            return fields.canonical_values(self.fields, values)
        except InvalidFieldValue as refused:
            column = next(
                (
                    header
                    for target, header in self.headers.items()
                    if fold(target) == fold(CUSTOM_PREFIX + refused.field.key)
                ),
                None,
            )
            raise RowRefused(column, refused.message) from None

    def _create(
        self, row: ImportRow, stage: Stage | None, owner: User | None, batch: _Batch
    ) -> None:
        created_at = row.created_at or self.now
        move = self._first_move(stage, row.lost_reason)
        entered = row.stage_changed_at or created_at
        contact = Contact(  # positional: half the time of keywords, a million times
            None,  # id
            row.name,
            row.phone,
            row.email,
            row.external_id,
            None,  # company_id, below
            row.source,
            owner.id if owner else None,  # owner_id
            stage.id if move and stage else None,  # stage_id
            row.value,
            row.tags or [],  # tags: the row's own, as rows are used once
            row.custom_fields,
            created_at,
            entered if move else None,  # stage_entered_at
            (entered if entered > created_at else created_at) if move else created_at,
            1,  # version
            self.actor.id,  # updated_by_id
        )
        if row.company is not None:
            contact.company_id = self.companies.get(row.company)
            if contact.company_id is None:
                batch.new_companies.append((contact, row.company))
        # The company's key is its folded name: companies are found and created by it.
        company_key = self._fold(row.company) if row.company is not None else None
        batch.new.append(
            _NewContact(
                row.row, contact, move.reason if move else None, search_text(row.name, company_key)
            )
        )

    async def _update(
        self,
        row: ImportRow,
        contact: Contact,
        stage: Stage | None,
        owner: User | None,
        latest: dict[int, datetime | None],
        batch: _Batch,
    ) -> None:
        assert contact.id is not None
        move = None
        if stage is not None and stage.id != contact.stage_id:
            move = await self._move(row, contact, stage, latest)
        # Field by field, spelled out: this runs for every matched row of a million.
        updates: dict[str, Any] = {}
        value: Any = row.name
        if value is not None and value != contact.name:
            updates["name"] = value
        value = row.phone
        if value is not None and value != contact.phone:
            updates["phone"] = value
        value = row.email
        if value is not None and value != contact.email:
            updates["email"] = value
        value = row.external_id
        if value is not None and value != contact.external_id:
            updates["external_id"] = value
        value = row.source
        if value is not None and value != contact.source:
            updates["source"] = value
        value = row.value
        if value is not None and value != contact.value:
            updates["value"] = value
        value = owner.id if owner is not None else None
        if value is not None and value != contact.owner_id:
            updates["owner_id"] = value
        tags = row.tags
        if (
            tags is not None
            and tags != contact.tags  # the same list is the same set of tags
            and sorted(map(self._fold, tags)) != sorted(map(self._fold, contact.tags))
        ):
            updates["tags"] = tags
        if row.custom_fields:  # else nothing to merge
            merged = {**contact.custom_fields, **row.custom_fields}
            if merged != contact.custom_fields:
                updates["custom_fields"] = merged
        company_id = self.companies.get(row.company) if row.company is not None else None
        if row.company is not None and (company_id is None or company_id != contact.company_id):
            updates["company_id"] = company_id
        if not updates and move is None:
            self.report.unchanged += 1
            return
        version = contact.version
        item = OperationItem(
            self._operation_id(),
            contact.id,
            contact.stage_id,
            contact.stage_entered_at,
            contact.last_activity_at,
            version + 1,
            _profile(contact) if updates else None,  # a move alone changes no field to put back
        )
        for name, value in updates.items():
            setattr(contact, name, value)
        if row.company is not None and company_id is None:
            batch.new_companies.append((contact, row.company))
        if move is not None:
            contact.stage_id = move.to_stage_id
            contact.stage_entered_at = move.at
            contact.last_activity_at = max(move.at, contact.last_activity_at or move.at)
            updates.update(dict.fromkeys(MOVED))
        contact.version = version + 1
        contact.updated_by_id = self.actor.id
        self.changed[contact.id] = row.row
        write = ContactWrite(contact, version, frozenset(updates))
        batch.changes.append(_Change(row.row, write, item, move))

    async def _move(
        self, row: ImportRow, contact: Contact, stage: Stage, latest: dict[int, datetime | None]
    ) -> StageChange | None:
        """The history row of moving the contact to the row's stage, or None when the rules
        make it no move at all; refuses a move dated before the contact's latest one."""
        assert contact.id is not None
        current = self.all_stages.get(contact.stage_id) if contact.stage_id else None
        move = plan_move(
            current,
            stage,
            role=self.actor.role,
            source=Source.IMPORT,
            reason=row.lost_reason,
            policy=self.policy,
        )
        if move is None:
            return None
        when = row.stage_changed_at or self.now
        last = await self._latest(contact.id, latest)
        if last is not None and when < last:
            raise RowRefused(
                "stage_changed_at",
                f"is before the contact's latest stage change ({last:%Y-%m-%d})",
            )
        return StageChange(
            contact.id,
            contact.stage_id,
            stage.id,
            when,
            self.actor.id,
            Source.IMPORT,
            move.reason,
            self._operation_id(),
        )

    def _first_move(self, stage: Stage | None, reason: str | None) -> Move | None:
        """A new contact's move into its first stage: the same for every row naming that stage
        and reason, so decided once for each (a refusal is decided again, and raised)."""
        key = (stage.id if stage else None, reason)
        if key not in self.first_moves:
            self.first_moves[key] = plan_move(
                None,
                stage,
                role=self.actor.role,
                source=Source.IMPORT,
                reason=reason,
                policy=self.policy,
            )
        return self.first_moves[key]

    def _fold(self, text: str) -> str:
        folded = self.folded.get(text)
        if folded is None:
            if len(self.folded) >= FOLDED_MAX:
                self.folded.clear()
            folded = self.folded[text] = fold(text)
        return folded

    def _known_stage(self, name: str) -> Stage | None:
        stage = self.stages_as_written.get(name)
        if stage is None:
            stage = self.stages.get(fold(name))
            if stage is not None:
                self.stages_as_written[name] = stage
        return stage

    async def _stage(self, name: str | None) -> Stage | None:
        if name is None:
            return None
        stage = self._known_stage(name)
        if stage is not None:
            return stage
        if not self.options.create_stages:
            raise RowRefused(
                "stage", f"there is no stage called {name!r} (--create-stages adds it)"
            )
        position = len([s for s in self.stages.values() if s.category is Category.OPEN]) + 1
        await self.quiet()
        stage = await self.uow.stages.add(Stage(None, stage_name(name), Category.OPEN, position))
        self.stages[fold(name)] = self.stages_as_written[name] = stage
        assert stage.id is not None
        self.all_stages[stage.id] = stage
        self.report.stages_created.append(stage.name)
        return stage

    async def _owner(self, name: str | None) -> User | None:
        if name is None:
            return None
        owner = self.owners_as_written.get(name)
        if owner is not None:
            return owner
        owner = self.owners.get(fold(name)) or self.owners.get(name.strip())
        if owner is None:
            if not self.options.create_owners:
                raise RowRefused("owner", f"nobody is called {name!r} (--create-owners adds them)")
            await self.quiet()
            owner = await self.uow.users.add(User(None, name.strip()[:100], Role.AGENT))
            self.owners[fold(name)] = owner
            self.report.owners_created.append(owner.name)
        self.owners_as_written[name] = owner
        return owner

    def _operation_id(self) -> int:
        assert self.operation is not None
        assert self.operation.id is not None
        return self.operation.id


def _label(identifier: str) -> str:
    return identifier.replace("_", " ")


def _profile(contact: Contact) -> dict[str, Any]:
    """A JSON-ready before-image of the fields an import may change."""
    image: dict[str, Any] = {name: getattr(contact, name) for name in PROFILE}
    if isinstance(image["value"], Decimal):
        image["value"] = str(image["value"])
    image["tags"] = list(contact.tags)
    image["custom_fields"] = dict(contact.custom_fields)
    return image


def parse_mode(raw: str) -> Mode:
    try:
        return Mode(raw)
    except ValueError:
        raise InvalidInput(f"{raw!r} is not a mode; use add, update or upsert.") from None


def parse_match(raw: Iterable[str]) -> tuple[str, ...]:
    fields = tuple(part.strip() for item in raw for part in item.split(",") if part.strip())
    unknown = [f for f in fields if f not in IDENTIFIERS]
    if unknown or not fields:
        raise InvalidInput("--match takes phone, email and/or external_id.")
    return fields
