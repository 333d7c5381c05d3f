"""What the domain needs from storage, as Protocols. Repositories never commit; the unit of
work does, once per use case."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from domain.access import Scope
from domain.model import (
    AccessRequest,
    Activity,
    ActivityKind,
    ApiKey,
    Company,
    Contact,
    CustomFieldDef,
    DigestSettings,
    EventKind,
    Notice,
    Operation,
    OperationItem,
    ReceivedEvent,
    SavedView,
    Source,
    Stage,
    StageChange,
    User,
)
from domain.reports import Closed, OwnerFigures, StayFigures

if TYPE_CHECKING:  # domain.imports reaches this module through the services it uses
    from domain.imports import Batch, ParsedFile


@dataclass(frozen=True, slots=True)
class SearchCriteria:
    """A search already normalized by the domain: exact identifiers and folded name words."""

    phone: str | None = None
    email: str | None = None
    external_id: str | None = None
    words: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContactFilter:
    """Which contacts a list shows (all conditions hold; None means any)."""

    owner_id: int | None = None
    stage_ids: tuple[int, ...] | None = None
    company_id: int | None = None
    idle_since: datetime | None = None  # last activity (or stage change) before this
    without_stage: bool = False  # with stage_ids: also contacts in no stage
    source: str | None = None  # compared ignoring case
    tag: str | None = None  # compared ignoring case and accents
    created_from: datetime | None = None
    created_before: datetime | None = None
    fields: tuple[tuple[str, str], ...] = ()  # custom field values, exactly
    words: tuple[str, ...] = ()  # folded words, each starting a word of the name or company
    # Idle by stage: in one of these stages, with the last activity before the stage's moment.
    idle_by_stage: tuple[tuple[int, datetime], ...] = ()
    without_task_after: datetime | None = None  # no open task due after this moment


EVERYTHING = Scope(everything=True)


@dataclass(frozen=True, slots=True)
class BulkMove:
    """Move the contacts of one stage (all, or those `matching` a filter) to another stage or to
    none, recording each move in history and, with an operation, for undo."""

    from_stage_id: int | None
    to_stage_id: int | None
    at: datetime
    by_user_id: int | None
    source: Source
    reason: str | None
    operation_id: int | None
    matching: ContactFilter | None = None  # only those matching, within `scope`
    scope: Scope = EVERYTHING


@dataclass(frozen=True, slots=True)
class ContactWrite:
    """A contact to write back, provided its stored version is still `expected_version`:
    the fields named in `changed` (Contact's attribute names, `tags` included), and its
    version and who updated it."""

    contact: Contact
    expected_version: int
    changed: frozenset[str]


class StageRepository(Protocol):
    async def list(self, *, include_archived: bool = False) -> list[Stage]: ...
    async def get(self, stage_id: int) -> Stage | None: ...
    async def add(self, stage: Stage) -> Stage: ...
    async def update(self, stage: Stage) -> None: ...
    async def contact_counts(self) -> dict[int | None, int]:
        """Contacts per current stage id; the key None counts contacts with no stage."""
        ...


class ContactRepository(Protocol):
    async def get(self, contact_id: int) -> Contact | None: ...
    async def find_by_identifiers(
        self, *, phone: str | None, email: str | None, external_id: str | None
    ) -> list[Contact]: ...
    async def add(self, contact: Contact, company_name: str | None) -> Contact: ...
    async def update(
        self, contact: Contact, *, expected_version: int, changed: frozenset[str]
    ) -> bool:
        """Write the fields named in `changed` (as in ContactWrite), its version and who updated
        it, if its stored version is still `expected_version`."""
        ...

    async def search(
        self, criteria: SearchCriteria, scope: Scope, *, limit: int, offset: int
    ) -> list[Contact]: ...
    async def listing(
        self, where: ContactFilter, scope: Scope, *, limit: int, offset: int = 0
    ) -> list[Contact]:
        """Contacts matching `where` within `scope`; the longest idle first when filtering
        on idleness, else the newest first."""
        ...

    async def batch_after(
        self, where: ContactFilter, scope: Scope, *, after_id: int, limit: int
    ) -> list[Contact]:
        """Up to `limit` contacts matching `where` within `scope` whose id is above `after_id`,
        by id: keyset pagination, as quick on the last batch as on the first."""
        ...

    async def custom_field_keys(self, where: ContactFilter, scope: Scope) -> set[str]:
        """Every custom field key set on a contact matching `where` within `scope`."""
        ...

    async def find_many(
        self,
        *,
        phones: list[str],
        emails: list[str],
        external_ids: list[str],
        lock: bool = False,
    ) -> list[Contact]:
        """Contacts having any of these identifiers, tags included (for matching a batch of
        imported rows or events). With `lock`, they stay locked until the unit of work ends, so
        that concurrent events for one contact apply one after the other (PostgreSQL; on SQLite
        every writing unit of work holds the database's one write lock anyway)."""
        ...

    async def add_many(
        self,
        contacts: list[Contact],
        *,
        operation_id: int | None = None,
        search_texts: Sequence[str] | None = None,
    ) -> None:
        """Insert new contacts in bulk (their company ids already set), setting their ids; if
        created by an operation, undoing it removes them. Each has a phone, an email or an
        external id, and these must be free: a clash (another transaction took one meanwhile)
        raises Conflict, and the whole transaction is refused. `search_texts`, when given, are
        the contacts' domain.text.search_text, worked out by the caller beforehand."""
        ...

    async def update_many(self, writes: list[ContactWrite]) -> list[int]:
        """Write changed contacts in bulk; returns the ids of those not written because someone
        changed them meanwhile (their stored version is no longer the one expected)."""
        ...

    async def company_ids(self, names: Collection[str], *, create: bool) -> dict[str, int]:
        """The ids of the companies of these names (ignoring case and accents), by the names as
        given; with `create`, the missing ones are created, else left out."""
        ...

    async def count_in_stage(self, stage_id: int) -> int: ...
    async def count_by_stage(self, where: ContactFilter, scope: Scope) -> dict[int | None, int]:
        """How many contacts match `where` within `scope`, per current stage id (None: none)."""
        ...

    async def move_stage_contents(self, move: BulkMove) -> int:
        """Apply a BulkMove in bulk; returns how many contacts moved."""
        ...


class HistoryRepository(Protocol):
    async def add(self, change: StageChange) -> None: ...
    async def add_many(self, changes: list[StageChange]) -> None:
        """Insert history rows in bulk; a change without an id gets one (those with one keep it:
        see new_ids)."""
        ...

    async def new_ids(self, count: int) -> list[int]:
        """Ids for `count` changes that add_many inserts next in this unit of work (before any
        change is added otherwise), for a caller that makes a great many of them: a change is
        immutable, and giving it its id later means making it again."""
        ...

    async def for_contact(self, contact_id: int) -> list[StageChange]: ...
    async def latest(self, contact_id: int) -> StageChange | None: ...
    async def latest_times(self, contact_ids: Collection[int]) -> dict[int, datetime]:
        """When each of these contacts last changed stage (contacts never moved are absent)."""
        ...


class UserRepository(Protocol):
    async def get(self, user_id: int) -> User | None: ...
    async def by_telegram_id(self, telegram_id: int) -> User | None: ...
    async def arriving(self, telegram_id: int) -> tuple[User | None, bool]:
        """The person with this Telegram id, and whether their messages are paused (a send to
        them was refused)."""
        ...

    async def by_name(self, name: str) -> list[User]:
        """Users whose name equals `name` ignoring case and diacritics."""
        ...

    async def get_many(self, user_ids: set[int]) -> dict[int, User]: ...
    async def list(self) -> list[User]: ...
    async def add(self, user: User) -> User: ...
    async def update(self, user: User) -> None: ...


class CompanyRepository(Protocol):
    async def get(self, company_id: int) -> Company | None: ...
    async def by_name(self, name: str) -> Company | None: ...
    async def names(self, company_ids: set[int]) -> dict[int, str]: ...


class ActivityRepository(Protocol):
    async def add(self, activity: Activity) -> Activity: ...
    async def claim_due_tasks(self, now: datetime, limit: int) -> list[Activity]:
        """Open tasks due by `now` that nobody was reminded of yet, marked reminded now (a
        second claim, by this or another process, does not get them)."""
        ...

    async def for_contact(
        self, contact_id: int, kinds: Sequence[ActivityKind] | None = None
    ) -> list[Activity]: ...


class OperationRepository(Protocol):
    async def add(self, operation: Operation) -> Operation: ...
    async def get(self, operation_id: int) -> Operation | None: ...
    async def recent(self, limit: int, *, actor_id: int | None = None) -> list[Operation]:
        """The newest first; only `actor_id`'s when given."""
        ...

    async def update(self, operation: Operation) -> None: ...
    async def forget(self, operation_id: int) -> None:
        """Remove an operation that changed nothing (nothing refers to it)."""
        ...

    async def add_items(self, items: list[OperationItem]) -> None: ...
    async def changed_since(self, operation_id: int) -> list[int]:
        """Contacts of the operation that someone changed (or deleted) after it."""
        ...

    async def revert(self, operation_id: int, *, by_user_id: int | None) -> int:
        """Put every contact the operation changed, and nobody changed since, back as it was:
        contacts it created are removed (with their history), the others get their stage and
        fields back, and the history rows it wrote are removed. Returns how many contacts were
        reverted."""
        ...


class AccessRequestRepository(Protocol):
    async def add(self, request: AccessRequest) -> AccessRequest: ...
    async def get(self, request_id: int) -> AccessRequest | None: ...
    async def pending_for(self, telegram_id: int) -> AccessRequest | None: ...
    async def pending(self) -> list[AccessRequest]: ...
    async def update(self, request: AccessRequest) -> None: ...


class ViewRepository(Protocol):
    async def add(self, view: SavedView) -> SavedView: ...
    async def get(self, view_id: int) -> SavedView | None: ...
    async def visible_to(self, user_id: int | None) -> list[SavedView]:
        """The user's own views and the shared ones, by name; None: everyone's."""
        ...

    async def delete(self, view_id: int) -> None: ...


class FieldRepository(Protocol):
    async def list(self) -> list[CustomFieldDef]:
        """Every custom field definition, in the order they were added."""
        ...

    async def add(self, field: CustomFieldDef) -> CustomFieldDef: ...
    async def delete(self, field_id: int) -> None: ...


class DigestRepository(Protocol):
    async def settings(self) -> dict[int, DigestSettings]:
        """Everyone's stored settings, by user id (a person without a row has the defaults)."""
        ...

    async def save(self, settings: DigestSettings) -> None: ...

    async def unpause(self, user_id: int) -> bool:
        """Clear the person's `blocked_at`; False (and nothing written) when it was not set."""
        ...

    async def claim(self, user_id: int, day: date, kind: str, at: datetime) -> bool:
        """Record that `kind` is being sent to the person for `day`; False when it was
        claimed already, so that nothing is ever sent twice."""
        ...

    async def unclaim(self, user_id: int, day: date, kind: str) -> None:
        """Forget a claim whose message was not sent."""
        ...

    async def mark_sent(self, user_id: int, day: date, kind: str, at: datetime) -> None: ...
    async def claimed(self, day: date, kind: str) -> set[int]:
        """Who has `kind` for `day` claimed already."""
        ...


class ApiKeyRepository(Protocol):
    async def add(self, key: ApiKey) -> ApiKey: ...
    async def active_named(self, name: str) -> ApiKey | None:
        """The key not revoked of that name (compared ignoring case and accents)."""
        ...

    async def by_prefixes(self, prefixes: set[str]) -> list[ApiKey]: ...
    async def list(self) -> list[ApiKey]: ...
    async def update(self, key: ApiKey) -> None: ...


class Conflict(Exception):
    """The unit of work collided with a concurrent one (a deadlock, a key another one took
    meanwhile) and was rolled back; trying it again sees what the other one committed."""


class DuplicateEvent(Conflict):
    """Another event took the same idempotency key meanwhile (the unique index refused it)."""


class DatabaseUnavailable(Exception):
    """The database could not carry out a unit of work for a reason that is no fault of the
    request (a failing disk, a lost connection): it was rolled back, so nothing changed, and the
    same request may succeed later. `message` says so in one line; `detail` is the driver's."""

    code = "unavailable"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.message = self._message()

    def _message(self) -> str:
        return f"The database could not be read or written ({self.detail}); nothing was changed."


class DatabaseBusy(DatabaseUnavailable):
    """Another connection held SQLite's one write lock for longer than the busy timeout."""

    code = "busy"

    def _message(self) -> str:
        return (
            "The database is busy with another write (another command, an import or the bot); "
            "nothing was changed. Try again in a moment."
        )


class DatabaseFull(DatabaseUnavailable):
    """The disk, or the database's size limit, left no room for what the unit of work wrote."""

    code = "full"

    def _message(self) -> str:
        return "The disk or the database is full; nothing was changed. Free some space and retry."


class EventRepository(Protocol):
    async def add_many(self, events: list[ReceivedEvent]) -> None:
        """Store events in bulk, setting their ids. Raises DuplicateEvent when an idempotency
        key is taken."""
        ...

    async def by_keys(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], ReceivedEvent]:
        """Events stored under these (via, idempotency key) pairs."""
        ...

    async def counts(self, contact_ids: set[int], kind: EventKind) -> dict[int, int]:
        """How many events of `kind` each contact has (contacts without any left out)."""
        ...

    async def for_contact(self, contact_id: int, *, limit: int) -> list[ReceivedEvent]:
        """The newest first."""
        ...


class RuleRepository(Protocol):
    async def chosen(self) -> dict[str, int | None]:
        """The triggers an admin set, with their stage id (None: no stage change)."""
        ...

    async def choose(self, trigger: str, stage_id: int | None) -> None: ...
    async def reset(self, trigger: str) -> None:
        """Back to the default rule."""
        ...


class TurnRepository(Protocol):
    """Whose turn it is to get a new lead, kept in the database so that every worker agrees."""

    async def last(self, queue: str) -> int | None:
        """The user who got the last lead of `queue`; locks the queue until the unit of work
        ends, so that two events at once give leads to two people."""
        ...

    async def record(self, queue: str, user_id: int) -> None: ...


class NoticeRepository(Protocol):
    async def add_many(self, notices: list[Notice]) -> None:
        """Store notices, setting their ids."""
        ...

    async def pending(self, limit: int) -> list[Notice]:
        """Notices not sent yet, the oldest first."""
        ...

    async def mark_sent(self, notice_ids: list[int], at: datetime) -> None: ...


# Whose contacts a report counts: None for everyone's (an admin's reports), else those owned by
# these users.
Owners = tuple[int, ...] | None


@dataclass(frozen=True, slots=True)
class ReportWindow:
    """Whose contacts a report counts and over which instants: `start` (included) and `end`
    (excluded) are whole seconds since 1970, UTC."""

    owners: Owners
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class PathGroup:
    """Contacts with the same path (the stages they entered, each once, in the order of their
    last entry) and the same current stage."""

    path: tuple[int, ...]
    stage_id: int | None
    contacts: int


@dataclass(frozen=True, slots=True)
class SourceGroup:
    """Contacts created in a window with the same source."""

    source: str | None
    contacts: int


@dataclass(frozen=True, slots=True)
class ClosedOverTime:
    """Contacts that entered the won and the lost category: in the whole window (each contact
    once) and per bucket of it (once per bucket)."""

    total: Closed
    buckets: list[Closed]


class ReportRepository(Protocol):
    """The aggregates behind the reports (docs/reports.md), computed by the database from the
    report tables, which hold stage ids and which rows enter the won or the lost category as
    the stages are categorized now. Medians are in seconds; owner keys are user ids, None for
    contacts without an owner."""

    async def current_stages(
        self, owners: Owners, stage_ids: tuple[int, ...] | None = None
    ) -> dict[int | None, int]:
        """Contacts per current stage (None: no stage), of these stages only when given."""
        ...

    async def cohort_paths(self, window: ReportWindow) -> list[PathGroup]:
        """Contacts whose first stage assignment falls in the window, by path and stage."""
        ...

    async def created_by_source(self, window: ReportWindow) -> list[SourceGroup]:
        """Contacts created in the window, by source."""
        ...

    async def idle(self, window: ReportWindow) -> int:
        """Contacts created in the window and never touched since (no activity, no stage
        change dated after their creation)."""
        ...

    async def closed(self, owners: Owners, bounds: Sequence[int]) -> ClosedOverTime:
        """Contacts that entered the won and the lost category from outside it between
        bounds[0] and bounds[-1], and per bucket: bucket n runs from bounds[n] (included) to
        bounds[n + 1]."""
        ...

    async def owner_figures(self, window: ReportWindow) -> dict[int | None, OwnerFigures]:
        """Per owner with something in the window: contacts created, converted and lost, the
        median time from creation to the first entry into won within the window, and the
        median time to the first response of the contacts created then that had one."""
        ...

    async def stays(
        self, window: ReportWindow, stage_ids: tuple[int, ...]
    ) -> dict[int, StayFigures]:
        """Per stage of `stage_ids`, the stays that ended in the window."""
        ...

    async def moves(self, window: ReportWindow) -> int:
        """Stage changes dated in the window, except those recording a contact's creation (a
        change from no stage dated at or before it)."""
        ...


T = TypeVar("T")


class UnitOfWork(Protocol):
    stages: StageRepository
    contacts: ContactRepository
    history: HistoryRepository
    users: UserRepository
    companies: CompanyRepository
    activities: ActivityRepository
    operations: OperationRepository
    access_requests: AccessRequestRepository
    views: ViewRepository
    fields: FieldRepository
    digests: DigestRepository
    api_keys: ApiKeyRepository
    events: EventRepository
    rules: RuleRepository
    turns: TurnRepository
    notices: NoticeRepository
    reports: ReportRepository

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def flush(self) -> None:
        """Waits until the writes made so far have reached the database, and raises the first
        failure among them (a Conflict...). In a bulk unit of work, writes may return before
        the database has run them, so that the next batch is worked out meanwhile; any read,
        and the commit, waits for them anyway."""
        ...

    def behind(self, step: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        """Starts `step` (reads, most often), to run after the writes made so far and before
        those made later, without waiting for them here; its outcome, when awaited."""
        ...

    async def commit(self) -> bool:
        """True once written; False when the update being handled was delivered again and an
        earlier delivery had stored this very step (nothing is written twice): what was read
        in this unit of work after its writes is then not what is stored."""
        ...

    async def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, bulk: bool = False, read_only: bool = False) -> UnitOfWork:
        """A new unit of work. `bulk`: it writes up to millions of rows in set-based statements
        whose every reference (to a contact, stage, user or operation) was read or written in
        the same transaction, and it deletes nothing through a cascade; storage may then skip
        the checks a database would repeat for every row (SQLite's foreign-key checks).
        `read_only`: it only reads and never commits, so it need not wait for writers."""
        ...


Clock = Callable[[], datetime]


class ReadBatches(Protocol):
    """Reads an import file's rows `size` at a time (storage.import_batches.batches); with
    `in_child`, in another process, so that reading and writing run on two cores."""

    def __call__(
        self,
        data: bytes,
        parsed: ParsedFile,
        parse_options: dict[str, Any],
        *,
        size: int,
        in_child: bool,
    ) -> AbstractAsyncContextManager[AsyncIterator[Batch]]: ...
