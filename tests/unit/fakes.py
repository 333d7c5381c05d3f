"""In-memory fakes of the storage ports, for fast unit tests of the domain's rules.

A FakeDatabase holds committed state; each unit of work works on a copy and writes it back only
on commit, so a refused operation leaves the database exactly as it was, as real storage does."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Self, TypeVar

from domain.access import Scope
from domain.errors import DuplicateStageName
from domain.model import (
    AccessRequest,
    Activity,
    ActivityKind,
    ApiKey,
    Company,
    Contact,
    CustomFieldDef,
    EventKind,
    Notice,
    Operation,
    OperationItem,
    ReceivedEvent,
    RequestStatus,
    Stage,
    StageChange,
    User,
)
from domain.ports import BulkMove, ContactFilter, ContactWrite, DuplicateEvent, SearchCriteria
from domain.text import fold, words

T = TypeVar("T")


@dataclass
class State:
    stages: dict[int, Stage] = field(default_factory=dict)
    contacts: dict[int, Contact] = field(default_factory=dict)
    history: list[StageChange] = field(default_factory=list)
    users: dict[int, User] = field(default_factory=dict)
    companies: dict[int, Company] = field(default_factory=dict)
    activities: list[Activity] = field(default_factory=list)
    operations: dict[int, Operation] = field(default_factory=dict)
    access_requests: dict[int, AccessRequest] = field(default_factory=dict)
    fields: dict[int, CustomFieldDef] = field(default_factory=dict)
    api_keys: dict[int, ApiKey] = field(default_factory=dict)
    events: dict[int, ReceivedEvent] = field(default_factory=dict)
    rules: dict[str, int | None] = field(default_factory=dict)
    turns: dict[str, int] = field(default_factory=dict)
    notices: dict[int, Notice] = field(default_factory=dict)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


class FakeDatabase:
    def __init__(self) -> None:
        self.state = State()
        self.commits = 0

    def uow(self, *, bulk: bool = False, read_only: bool = False) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)


class _Repo:
    def __init__(self, state: State) -> None:
        self.s = state


class FakeStages(_Repo):
    async def list(self, *, include_archived: bool = False) -> list[Stage]:
        stages = sorted(self.s.stages.values(), key=lambda st: (st.position, st.id or 0))
        return [copy.copy(st) for st in stages if include_archived or not st.archived]

    async def get(self, stage_id: int) -> Stage | None:
        stage = self.s.stages.get(stage_id)
        return copy.copy(stage) if stage else None

    async def add(self, stage: Stage) -> Stage:
        self._check_unique(stage)
        stage.id = self.s.new_id()
        self.s.stages[stage.id] = copy.copy(stage)
        return stage

    async def update(self, stage: Stage) -> None:
        self._check_unique(stage)
        assert stage.id is not None
        self.s.stages[stage.id] = copy.copy(stage)

    async def contact_counts(self) -> dict[int | None, int]:
        counts: dict[int | None, int] = {}
        for contact in self.s.contacts.values():
            counts[contact.stage_id] = counts.get(contact.stage_id, 0) + 1
        return counts

    def _check_unique(self, stage: Stage) -> None:
        if stage.archived:
            return
        for other in self.s.stages.values():
            if other.id != stage.id and not other.archived and fold(other.name) == fold(stage.name):
                raise DuplicateStageName(stage.name)


class FakeContacts(_Repo):
    async def get(self, contact_id: int) -> Contact | None:
        contact = self.s.contacts.get(contact_id)
        return copy.deepcopy(contact) if contact else None

    async def find_by_identifiers(
        self, *, phone: str | None, email: str | None, external_id: str | None
    ) -> list[Contact]:
        return [
            copy.deepcopy(c)
            for c in self.s.contacts.values()
            if (phone and c.phone == phone)
            or (email and c.email == email)
            or (external_id and c.external_id == external_id)
        ]

    async def company_ids(self, names: Collection[str], *, create: bool) -> dict[str, int]:
        ids = {}
        for name in names:
            company = next(
                (c for c in self.s.companies.values() if fold(c.name) == fold(name)), None
            )
            if company is None and create:
                company = Company(self.s.new_id(), name)
                self.s.companies[company.id or 0] = company
            if company is not None:
                ids[name] = company.id or 0
        return ids

    async def add(self, contact: Contact, company_name: str | None) -> Contact:
        if company_name:
            company = next(
                (c for c in self.s.companies.values() if fold(c.name) == fold(company_name)), None
            )
            if company is None:
                company = Company(self.s.new_id(), company_name)
                self.s.companies[company.id or 0] = company
            contact.company_id = company.id
        contact.id = self.s.new_id()
        self.s.contacts[contact.id] = copy.deepcopy(contact)
        return contact

    async def update(
        self, contact: Contact, *, expected_version: int, changed: frozenset[str]
    ) -> bool:
        assert contact.id is not None
        if self.s.contacts[contact.id].version != expected_version:
            return False
        self.s.contacts[contact.id] = copy.deepcopy(contact)
        return True

    async def search(
        self, criteria: SearchCriteria, scope: Scope, *, limit: int, offset: int
    ) -> list[Contact]:
        found = []
        for contact in sorted(self.s.contacts.values(), key=lambda c: -(c.id or 0)):
            owner = self.s.users.get(contact.owner_id) if contact.owner_id else None
            if not scope.covers(owner):
                continue
            company = self.s.companies.get(contact.company_id) if contact.company_id else None
            haystack = words(" ".join(p for p in (contact.name, company and company.name) if p))
            exact = (
                (criteria.phone and contact.phone == criteria.phone)
                or (criteria.email and contact.email == criteria.email)
                or (criteria.external_id and contact.external_id == criteria.external_id)
            )
            by_words = bool(criteria.words) and all(
                any(word.startswith(q) for word in haystack) for q in criteria.words
            )
            if exact or by_words:
                found.append(copy.deepcopy(contact))
        return found[offset : offset + limit]

    async def listing(
        self, where: ContactFilter, scope: Scope, *, limit: int, offset: int = 0
    ) -> list[Contact]:
        found = []
        for contact in sorted(self.s.contacts.values(), key=lambda c: -(c.id or 0)):
            owner = self.s.users.get(contact.owner_id) if contact.owner_id else None
            if not scope.covers(owner):
                continue
            if where.owner_id is not None and contact.owner_id != where.owner_id:
                continue
            if where.stage_ids is not None and contact.stage_id not in where.stage_ids:
                continue
            if where.company_id is not None and contact.company_id != where.company_id:
                continue
            last = contact.last_activity_at
            if where.idle_since is not None and (last is None or last >= where.idle_since):
                continue
            found.append(copy.deepcopy(contact))
        if where.idle_since is not None:
            found.sort(key=lambda c: c.last_activity_at or c.created_at)
        return found[offset : offset + limit]

    async def batch_after(
        self, where: ContactFilter, scope: Scope, *, after_id: int, limit: int
    ) -> list[Contact]:
        found = [c for c in self._matching(where, scope) if (c.id or 0) > after_id]
        found.sort(key=lambda c: c.id or 0)
        return [copy.deepcopy(c) for c in found[:limit]]

    async def custom_field_keys(self, where: ContactFilter, scope: Scope) -> set[str]:
        return {key for c in self._matching(where, scope) for key in c.custom_fields}

    def _matching(self, where: ContactFilter, scope: Scope) -> list[Contact]:
        found = []
        for contact in self.s.contacts.values():
            owner = self.s.users.get(contact.owner_id) if contact.owner_id else None
            last = contact.last_activity_at
            if not scope.covers(owner):
                continue
            company = self.s.companies.get(contact.company_id) if contact.company_id else None
            haystack = words(" ".join(p for p in (contact.name, company and company.name) if p))
            if not all(any(word.startswith(q) for word in haystack) for q in where.words):
                continue
            if (
                (where.owner_id is not None and contact.owner_id != where.owner_id)
                or (where.stage_ids is not None and contact.stage_id not in where.stage_ids)
                or (where.company_id is not None and contact.company_id != where.company_id)
                or (where.idle_since is not None and (last is None or last >= where.idle_since))
            ):
                continue
            found.append(contact)
        return found

    async def find_many(
        self,
        *,
        phones: list[str],
        emails: list[str],
        external_ids: list[str],
        lock: bool = False,
    ) -> list[Contact]:
        return [
            copy.deepcopy(c)
            for c in self.s.contacts.values()
            if (c.phone and c.phone in phones)
            or (c.email and c.email in emails)
            or (c.external_id and c.external_id in external_ids)
        ]

    async def add_many(
        self,
        contacts: list[Contact],
        *,
        operation_id: int | None = None,
        search_texts: Sequence[str] | None = None,
    ) -> None:
        for contact in contacts:
            contact.id = self.s.new_id()
            self.s.contacts[contact.id] = copy.deepcopy(contact)

    async def update_many(self, writes: list[ContactWrite]) -> list[int]:
        stale = []
        for write in writes:
            if not await self.update(
                write.contact, expected_version=write.expected_version, changed=write.changed
            ):
                stale.append(write.contact.id or 0)
        return stale

    async def count_in_stage(self, stage_id: int) -> int:
        return sum(1 for c in self.s.contacts.values() if c.stage_id == stage_id)

    async def count_by_stage(self, where: ContactFilter, scope: Scope) -> dict[int | None, int]:
        counts: dict[int | None, int] = {}
        for contact in self._matching(where, scope):
            counts[contact.stage_id] = counts.get(contact.stage_id, 0) + 1
        return counts

    async def move_stage_contents(self, move: BulkMove) -> int:
        moved = 0
        matching = self._matching(move.matching or ContactFilter(), move.scope)
        for contact in matching:
            if contact.stage_id == move.from_stage_id:
                assert contact.id is not None
                self.s.history.append(
                    StageChange(
                        contact.id,
                        move.from_stage_id,
                        move.to_stage_id,
                        move.at,
                        move.by_user_id,
                        move.source,
                        move.reason,
                        move.operation_id,
                        id=self.s.new_id(),
                    )
                )
                contact.stage_id = move.to_stage_id
                contact.stage_entered_at = move.at
                contact.last_activity_at = move.at
                contact.version += 1
                moved += 1
        return moved


class FakeHistory(_Repo):
    async def add(self, change: StageChange) -> None:
        self.s.history.append(dataclasses.replace(change, id=self.s.new_id()))

    async def add_many(self, changes: list[StageChange]) -> None:
        for change in changes:
            if change.id is None:
                await self.add(change)
            else:
                self.s.history.append(change)

    async def new_ids(self, count: int) -> list[int]:
        return [self.s.new_id() for _ in range(count)]

    async def for_contact(self, contact_id: int) -> list[StageChange]:
        rows = [c for c in self.s.history if c.contact_id == contact_id]
        return sorted(rows, key=lambda c: (c.at, c.id or 0))

    async def latest(self, contact_id: int) -> StageChange | None:
        rows = await self.for_contact(contact_id)
        return rows[-1] if rows else None

    async def latest_times(self, contact_ids: Collection[int]) -> dict[int, datetime]:
        times: dict[int, datetime] = {}
        for change in self.s.history:
            if change.contact_id in contact_ids:
                times[change.contact_id] = max(change.at, times.get(change.contact_id, change.at))
        return times


class FakeUsers(_Repo):
    async def get(self, user_id: int) -> User | None:
        return copy.copy(self.s.users.get(user_id))

    async def by_telegram_id(self, telegram_id: int) -> User | None:
        return next(
            (copy.copy(u) for u in self.s.users.values() if u.telegram_id == telegram_id), None
        )

    async def arriving(self, telegram_id: int) -> tuple[User | None, bool]:
        return await self.by_telegram_id(telegram_id), False  # the fakes keep no digests

    async def by_name(self, name: str) -> list[User]:
        return [copy.copy(u) for u in self.s.users.values() if fold(u.name) == fold(name)]

    async def get_many(self, user_ids: set[int]) -> dict[int, User]:
        return {i: copy.copy(u) for i, u in self.s.users.items() if i in user_ids}

    async def list(self) -> list[User]:
        return [copy.copy(u) for u in self.s.users.values()]

    async def add(self, user: User) -> User:
        user.id = self.s.new_id()
        self.s.users[user.id] = copy.copy(user)
        return user

    async def update(self, user: User) -> None:
        assert user.id is not None
        self.s.users[user.id] = copy.copy(user)


class FakeCompanies(_Repo):
    async def get(self, company_id: int) -> Company | None:
        return self.s.companies.get(company_id)

    async def by_name(self, name: str) -> Company | None:
        return next((c for c in self.s.companies.values() if fold(c.name) == fold(name)), None)

    async def names(self, company_ids: set[int]) -> dict[int, str]:
        return {i: c.name for i, c in self.s.companies.items() if i in company_ids}


class FakeActivities(_Repo):
    async def add(self, activity: Activity) -> Activity:
        activity.id = self.s.new_id()
        self.s.activities.append(copy.copy(activity))
        return activity

    async def for_contact(
        self, contact_id: int, kinds: Sequence[ActivityKind] | None = None
    ) -> list[Activity]:
        rows = [
            a
            for a in self.s.activities
            if a.contact_id == contact_id and (kinds is None or a.kind in kinds)
        ]
        return sorted(rows, key=lambda a: a.at, reverse=True)


class FakeOperations(_Repo):
    async def add(self, operation: Operation) -> Operation:
        operation.id = self.s.new_id()
        self.s.operations[operation.id] = copy.copy(operation)
        return operation

    async def update(self, operation: Operation) -> None:
        assert operation.id is not None
        self.s.operations[operation.id] = copy.copy(operation)

    async def forget(self, operation_id: int) -> None:
        del self.s.operations[operation_id]

    async def add_items(self, items: list[OperationItem]) -> None:
        pass  # undo is tested against real storage

    async def recent(self, limit: int) -> list[Operation]:
        return sorted(self.s.operations.values(), key=lambda o: o.created_at, reverse=True)[:limit]


class FakeAccessRequests(_Repo):
    async def add(self, request: AccessRequest) -> AccessRequest:
        request.id = self.s.new_id()
        self.s.access_requests[request.id] = copy.copy(request)
        return request

    async def get(self, request_id: int) -> AccessRequest | None:
        return copy.copy(self.s.access_requests.get(request_id))

    async def pending_for(self, telegram_id: int) -> AccessRequest | None:
        return next(
            (
                copy.copy(r)
                for r in self.s.access_requests.values()
                if r.telegram_id == telegram_id and r.status is RequestStatus.PENDING
            ),
            None,
        )

    async def pending(self) -> list[AccessRequest]:
        return [
            copy.copy(r)
            for r in self.s.access_requests.values()
            if r.status is RequestStatus.PENDING
        ]

    async def update(self, request: AccessRequest) -> None:
        assert request.id is not None
        self.s.access_requests[request.id] = copy.copy(request)


class FakeFields(_Repo):
    async def list(self) -> list[CustomFieldDef]:
        return [copy.copy(f) for _, f in sorted(self.s.fields.items())]

    async def add(self, field: CustomFieldDef) -> CustomFieldDef:
        field.id = self.s.new_id()
        self.s.fields[field.id] = copy.copy(field)
        return field

    async def delete(self, field_id: int) -> None:
        self.s.fields.pop(field_id, None)


class FakeApiKeys(_Repo):
    async def add(self, key: ApiKey) -> ApiKey:
        key.id = self.s.new_id()
        self.s.api_keys[key.id] = copy.copy(key)
        return key

    async def active_named(self, name: str) -> ApiKey | None:
        return next(
            (
                copy.copy(k)
                for k in self.s.api_keys.values()
                if k.active and fold(k.name) == fold(name)
            ),
            None,
        )

    async def by_prefixes(self, prefixes: set[str]) -> list[ApiKey]:
        return [copy.copy(k) for k in self.s.api_keys.values() if k.prefix in prefixes]

    async def list(self) -> list[ApiKey]:
        return [copy.copy(k) for k in sorted(self.s.api_keys.values(), key=lambda k: -(k.id or 0))]

    async def update(self, key: ApiKey) -> None:
        assert key.id is not None
        self.s.api_keys[key.id] = copy.copy(key)


class FakeEvents(_Repo):
    async def add_many(self, events: list[ReceivedEvent]) -> None:
        taken = {(e.via, e.idempotency_key) for e in self.s.events.values() if e.idempotency_key}
        for event in events:
            key = (event.via, event.idempotency_key)
            if event.idempotency_key is not None and key in taken:
                raise DuplicateEvent(event.idempotency_key)
            taken.add(key)
            event.id = self.s.new_id()
            self.s.events[event.id] = copy.copy(event)

    async def by_keys(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], ReceivedEvent]:
        return {
            (e.via, e.idempotency_key): copy.copy(e)
            for e in self.s.events.values()
            if e.idempotency_key is not None and (e.via, e.idempotency_key) in keys
        }

    async def counts(self, contact_ids: set[int], kind: EventKind) -> dict[int, int]:
        counted: dict[int, int] = {}
        for event in self.s.events.values():
            if event.contact_id in contact_ids and event.kind == kind:
                counted[event.contact_id] = counted.get(event.contact_id, 0) + 1
        return counted

    async def for_contact(self, contact_id: int, *, limit: int) -> list[ReceivedEvent]:
        mine = [e for e in self.s.events.values() if e.contact_id == contact_id]
        return [copy.copy(e) for e in sorted(mine, key=lambda e: -(e.id or 0))[:limit]]


class FakeRules(_Repo):
    async def chosen(self) -> dict[str, int | None]:
        return dict(self.s.rules)

    async def choose(self, trigger: str, stage_id: int | None) -> None:
        self.s.rules[trigger] = stage_id

    async def reset(self, trigger: str) -> None:
        self.s.rules.pop(trigger, None)


class FakeTurns(_Repo):
    async def last(self, queue: str) -> int | None:
        return self.s.turns.get(queue)

    async def record(self, queue: str, user_id: int) -> None:
        self.s.turns[queue] = user_id


class FakeNotices(_Repo):
    async def add_many(self, notices: list[Notice]) -> None:
        for notice in notices:
            notice.id = self.s.new_id()
            self.s.notices[notice.id] = copy.copy(notice)

    async def pending(self, limit: int) -> list[Notice]:
        waiting = [n for _, n in sorted(self.s.notices.items()) if n.sent_at is None]
        return [copy.copy(n) for n in waiting[:limit]]

    async def mark_sent(self, notice_ids: list[int], at: datetime) -> None:
        for notice_id in notice_ids:
            self.s.notices[notice_id].sent_at = at


class FakeUnitOfWork:
    def __init__(self, database: FakeDatabase) -> None:
        self._database = database

    async def __aenter__(self) -> Self:
        self._state = copy.deepcopy(self._database.state)
        state = self._state
        self.stages = FakeStages(state)
        self.contacts = FakeContacts(state)
        self.history = FakeHistory(state)
        self.users = FakeUsers(state)
        self.companies = FakeCompanies(state)
        self.activities = FakeActivities(state)
        self.operations = FakeOperations(state)
        self.access_requests = FakeAccessRequests(state)
        self.fields = FakeFields(state)
        self.api_keys = FakeApiKeys(state)
        self.events = FakeEvents(state)
        self.rules = FakeRules(state)
        self.turns = FakeTurns(state)
        self.notices = FakeNotices(state)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    async def flush(self) -> None:
        pass

    def behind(self, step: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        return asyncio.ensure_future(step())

    async def commit(self) -> bool:
        self._database.state = copy.deepcopy(self._state)
        self._database.commits += 1
        return True

    async def rollback(self) -> None:
        self._state = copy.deepcopy(self._database.state)
