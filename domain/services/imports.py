"""Importing a CSV or XLSX file: match each row to a contact by phone, email or external id, then
add, update or both, in one transaction, every rule applied as on any other path; undoable.
A dry run does all of it and rolls back, so its counts are exactly what the import would do."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from domain import fields
from domain.access import require_role
from domain.errors import DomainError, InvalidInput
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
from domain.ports import Clock, UnitOfWork, UnitOfWorkFactory
from domain.stages import stage_name
from domain.text import fold
from domain.transitions import Policy, plan_move

BATCH = 1000
# The scalar fields an import may change, and how a contact's value is kept in a before-image.
PROFILE = ("name", "phone", "email", "external_id", "source", "value", "owner_id", "company_id")


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
    operation_id: int | None = None
    dry_run: bool = False
    header: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)

    def error_csv(self) -> bytes:
        return error_report(self.errors, self.header)


@dataclass(frozen=True, slots=True)
class _NewContact:
    contact: Contact
    company: str | None
    reason: str | None  # the lost reason of its first stage, when lost


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
        default_region: str,
        zone: ZoneInfo,
        policy: Policy | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._uow = uow
        self._region = default_region
        self._zone = zone
        self._policy = policy or Policy()
        self._clock = clock

    async def run(self, actor: User, data: bytes, options: ImportOptions) -> ImportReport:
        """Import a file (admins). A broken file raises ImportRefused and changes nothing."""
        require_role(actor, Role.ADMIN)
        now = self._clock()
        parsed = parse(
            data,
            mapping=options.mapping,
            default_region=self._region,
            zone=self._zone,
            now=now,
            match=options.match,
        )
        report = ImportReport(
            unknown_columns=parsed.unknown_columns, dry_run=options.dry_run, header=parsed.header
        )
        async with self._uow() as uow:
            run = _Run(uow, actor, options, self._policy, now, report, parsed.columns)
            await run.prepare()
            batch: list[ImportRow] = []
            for row in parsed.rows:
                batch.append(row)
                if len(batch) == BATCH:
                    await run.apply(batch)
                    batch = []
            await run.apply(batch)
            report.errors = sorted([*parsed.errors, *report.errors], key=lambda e: e.row)
            if options.dry_run:
                return report  # leaving the unit of work rolls everything back
            await run.finish()
            await uow.commit()
        report.operation_id = run.operation.id if run.operation else None
        return report


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
        self.stages: dict[str, Stage] = {}
        self.all_stages: dict[int, Stage] = {}
        self.owners: dict[str, User] = {}
        self.operation: Operation | None = None
        self.items: list[OperationItem] = []
        self.pending: list[_NewContact] = []
        self.fields: list[CustomFieldDef] = []
        self.columns = columns

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

    async def apply(self, rows: Sequence[ImportRow]) -> None:
        if not rows:
            return
        existing = await self.uow.contacts.find_many(
            phones=[r.phone for r in rows if r.phone and "phone" in self.options.match],
            emails=[r.email for r in rows if r.email and "email" in self.options.match],
            external_ids=[
                r.external_id for r in rows if r.external_id and "external_id" in self.options.match
            ],
        )
        index = {(f, getattr(c, f)): c for c in existing for f in IDENTIFIERS if getattr(c, f)}
        for row in rows:
            try:
                await self._row(row, index)
            except RowRefused as refused:
                self.report.errors.append(RowError(row.row, refused.column, refused.reason))
            except DomainError as error:
                self.report.errors.append(RowError(row.row, None, error.message))
        await self._add_pending()

    async def _add_pending(self) -> None:
        """The batch's new contacts in a few set-based statements, with their first history
        row and what undo needs to remove them."""
        if not self.pending:
            return
        new = self.pending
        self.pending = []
        await self.uow.contacts.add_many([(n.contact, n.company) for n in new])
        operation_id = self._operation_id()
        changes = []
        for n in new:
            contact = n.contact
            assert contact.id is not None
            if contact.stage_id is not None:
                assert contact.stage_entered_at is not None
                changes.append(
                    StageChange(
                        contact.id,
                        None,
                        contact.stage_id,
                        contact.stage_entered_at,
                        self.actor.id,
                        Source.IMPORT,
                        n.reason,
                        operation_id,
                    )
                )
            self.items.append(
                OperationItem(operation_id, contact.id, True, None, None, None, contact.version)
            )
        await self.uow.history.add_many(changes)

    async def finish(self) -> None:
        assert self.operation is not None
        report = self.report
        self.operation.contacts = report.created + report.updated
        self.operation.description = f"Import: {report.created} created, {report.updated} updated"
        await self.uow.operations.update(self.operation)
        await self.uow.operations.add_items(self.items)

    async def _row(self, row: ImportRow, index: dict[tuple[str, Any], Contact]) -> None:
        matches = {
            index[(f, value)].id: f
            for f, value in row.identifiers().items()
            if f in self.options.match and (f, value) in index
        }
        if len(matches) > 1:
            found = ", ".join(f"#{cid} by {f.replace('_', ' ')}" for cid, f in matches.items())
            raise RowRefused(None, f"matches two contacts ({found}); fix the file or merge them")
        if row.custom_fields and self.fields:
            row.custom_fields = self._canonical_fields(row.custom_fields)
        stage = await self._stage(row.stage)
        owner = await self._owner(row.owner)
        if not matches:
            if self.options.mode is Mode.UPDATE:
                raise RowRefused(None, "no contact matches it (update only)")
            await self._create(row, stage, owner)
            return
        contact = next(c for c in index.values() if c.id in matches)
        if self.options.mode is Mode.ADD:
            self.report.unchanged += 1
            return
        await self._update(row, contact, stage, owner)

    def _canonical_fields(self, values: dict[str, str]) -> dict[str, str]:
        """Defined fields in their one spelling (`vang` → `Vàng`, `1.500.000` → `1500000`);
        a value a field refuses rejects the row, naming the column."""
        try:
            return fields.canonical_values(self.fields, values)
        except InvalidFieldValue as refused:
            column = next(
                (
                    header
                    for header, target in self.columns.items()
                    if fold(target) == fold(CUSTOM_PREFIX + refused.field.key)
                ),
                None,
            )
            raise RowRefused(column, refused.message) from None

    async def _create(self, row: ImportRow, stage: Stage | None, owner: User | None) -> None:
        created_at = row.created_at or self.now
        move = plan_move(
            None,
            stage,
            role=self.actor.role,
            source=Source.IMPORT,
            reason=row.lost_reason,
            policy=self.policy,
        )
        entered = row.stage_changed_at or created_at
        contact = Contact(
            None,
            row.name,
            phone=row.phone,
            email=row.email,
            external_id=row.external_id,
            source=row.source,
            owner_id=owner.id if owner else None,
            stage_id=stage.id if move and stage else None,
            value=row.value,
            tags=list(row.tags or []),
            custom_fields=dict(row.custom_fields),
            created_at=created_at,
            stage_entered_at=entered if move else None,
            last_activity_at=max(created_at, entered) if move else created_at,
            updated_by_id=self.actor.id,
        )
        if not (contact.name or contact.phone or contact.email or contact.external_id):
            raise RowRefused(None, "a contact needs a name, a phone, an email or an external id")
        self.pending.append(_NewContact(contact, row.company, move.reason if move else None))
        self.report.created += 1

    async def _update(
        self, row: ImportRow, contact: Contact, stage: Stage | None, owner: User | None
    ) -> None:
        before = _profile(contact)
        changed = False
        for name, value in (
            ("name", row.name),
            ("phone", row.phone),
            ("email", row.email),
            ("external_id", row.external_id),
            ("source", row.source),
            ("value", row.value),
            ("owner_id", owner.id if owner else None),
        ):
            if value is not None and getattr(contact, name) != value:
                setattr(contact, name, value)
                changed = True
        if row.tags is not None and sorted(map(fold, row.tags)) != sorted(map(fold, contact.tags)):
            contact.tags = list(row.tags)
            changed = True
        merged = {**contact.custom_fields, **row.custom_fields}
        if merged != contact.custom_fields:
            contact.custom_fields = merged
            changed = True
        if row.company is not None:
            company = await self.uow.companies.by_name(row.company)
            if company is None or company.id != contact.company_id:
                contact.company_id = await self.uow.contacts.company_id(row.company)
                changed = True
        stage_before = (contact.stage_id, contact.stage_entered_at, contact.last_activity_at)
        change = None
        if stage is not None and stage.id != contact.stage_id:
            current = self.all_stages.get(contact.stage_id) if contact.stage_id else None
            move = plan_move(
                current,
                stage,
                role=self.actor.role,
                source=Source.IMPORT,
                reason=row.lost_reason,
                policy=self.policy,
            )
            if move is not None:
                assert contact.id is not None
                when = row.stage_changed_at or self.now
                latest = await self.uow.history.latest(contact.id)
                if latest is not None and when < latest.at:
                    raise RowRefused(
                        "stage_changed_at",
                        f"is before the contact's latest stage change ({latest.at:%Y-%m-%d})",
                    )
                change = StageChange(
                    contact.id,
                    contact.stage_id,
                    stage.id,
                    when,
                    self.actor.id,
                    Source.IMPORT,
                    move.reason,
                    self._operation_id(),
                )
                contact.stage_id = stage.id
                contact.stage_entered_at = when
                contact.last_activity_at = max(when, contact.last_activity_at or when)
                changed = True
        if not changed:
            self.report.unchanged += 1
            return
        version = contact.version
        contact.version += 1
        contact.updated_by_id = self.actor.id
        if not await self.uow.contacts.update(contact, expected_version=version):
            raise RowRefused(None, "the contact changed during the import; import it again")
        if change is not None:
            await self.uow.history.add(change)
        assert contact.id is not None
        self.items.append(
            OperationItem(
                self._operation_id(),
                contact.id,
                False,
                stage_before[0],
                stage_before[1],
                stage_before[2],
                contact.version,
                before,
            )
        )
        self.report.updated += 1

    async def _stage(self, name: str | None) -> Stage | None:
        if name is None:
            return None
        stage = self.stages.get(fold(name))
        if stage is not None:
            return stage
        if not self.options.create_stages:
            raise RowRefused(
                "stage", f"there is no stage called {name!r} (--create-stages adds it)"
            )
        position = len([s for s in self.stages.values() if s.category is Category.OPEN]) + 1
        stage = await self.uow.stages.add(Stage(None, stage_name(name), Category.OPEN, position))
        self.stages[fold(name)] = stage
        assert stage.id is not None
        self.all_stages[stage.id] = stage
        self.report.stages_created.append(stage.name)
        return stage

    async def _owner(self, name: str | None) -> User | None:
        if name is None:
            return None
        owner = self.owners.get(fold(name)) or self.owners.get(name.strip())
        if owner is not None:
            return owner
        if not self.options.create_owners:
            raise RowRefused("owner", f"nobody is called {name!r} (--create-owners adds them)")
        owner = await self.uow.users.add(User(None, name.strip()[:100], Role.AGENT))
        self.owners[fold(name)] = owner
        self.report.owners_created.append(owner.name)
        return owner

    def _operation_id(self) -> int:
        assert self.operation is not None
        assert self.operation.id is not None
        return self.operation.id


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
