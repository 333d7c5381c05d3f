"""Events from web forms, landing pages, email tools and accounting (ISSUE 7): each finds or
creates its contact, follows the automation rule of its trigger, and is stored with what came of
it, all or nothing, and a replay has no effect.

Events that arrive together are applied in one unit of work: what they need is read once, each
is applied in memory in turn, and what they changed is written in bulk at the end — on SQLite a
statement costs about as much as all the rules, so this is what makes hundreds a second."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from domain import fields
from domain.access import require_role
from domain.automation import Rule, decide, parse_trigger, rule_table, trigger_of
from domain.errors import (
    ContactNotFound,
    DomainError,
    DuplicateContact,
    EventConflict,
    IdempotencyKeyReused,
    InvalidEvent,
    StageNotFound,
    StaleVersion,
)
from domain.model import (
    Contact,
    CustomFieldDef,
    EventKind,
    Notice,
    Outcome,
    ReceivedEvent,
    Role,
    Source,
    Stage,
    StageChange,
    User,
    utcnow,
)
from domain.phones import normalize_email, normalize_phone
from domain.ports import Clock, Conflict, ContactWrite, UnitOfWork, UnitOfWorkFactory
from domain.services.contacts import (
    ContactDetails,
    ContactDraft,
    new_contact,
    user_by_ref,
)
from domain.text import clean_name, fold
from domain.transitions import Policy
from domain.values import VALUE_LIMIT

NAME_MAX = 200
SOURCE_MAX = 100
EXTERNAL_ID_MAX = 100
KEY_MAX = 200
FIELDS_MAX = 50
FIELD_NAME_MAX = 64
FIELD_VALUE_MAX = 1000
# A concurrent event for the same contact or idempotency key makes an attempt fail as a whole;
# the next attempt sees what the other one committed.
ATTEMPTS = 3


@dataclass(slots=True)
class EventDraft:
    """An event as the HTTP API received it, before normalization."""

    kind: str
    phone: str | None = None
    email: str | None = None
    external_id: str | None = None
    name: str | None = None
    company: str | None = None
    source: str | None = None
    value: Decimal | str | None = None
    custom_fields: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class LeadRouting:
    """Who gets a new lead: the fixed owner of its source, else the next active agent of `team`
    (of everyone when None), in turn."""

    team: str | None = None
    owners: Mapping[str, str] = field(default_factory=dict)  # source → name or Telegram id

    def owner_for(self, source: str | None) -> str | None:
        key = fold(source or "")
        return next((ref for name, ref in self.owners.items() if key and fold(name) == key), None)

    @property
    def queue(self) -> str:
        return f"team:{fold(self.team)}" if self.team else "agents"


@dataclass(frozen=True, slots=True)
class EventResult:
    event: ReceivedEvent
    contact: ContactDetails
    replayed: bool  # the idempotency key was seen before: this is the first result, unchanged
    notices: list[Notice]  # people to tell, once committed


@dataclass(frozen=True, slots=True)
class _Event:
    kind: EventKind
    phone: str | None
    email: str | None
    external_id: str | None
    name: str | None
    company: str | None
    source: str | None
    value: Decimal | None
    custom_fields: dict[str, str]
    idempotency_key: str | None

    def fingerprint(self) -> str:
        """Tells the same event sent again from another one under the same idempotency key."""
        facts = [
            self.kind.value,
            self.phone,
            self.email,
            self.external_id,
            self.name,
            self.company,
            self.source,
            str(self.value) if self.value is not None else None,
            sorted(self.custom_fields.items()),
        ]
        return hashlib.sha256(json.dumps(facts, ensure_ascii=False).encode()).hexdigest()


class EventService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        default_region: str = "VN",
        policy: Policy | None = None,
        routing: LeadRouting | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._uow = uow
        self._region = default_region
        self._policy = policy or Policy()
        self._routing = routing or LeadRouting()
        self._clock = clock

    async def record(self, via: str, draft: EventDraft) -> EventResult:
        """Apply an event that came with the API key named `via` (see `record_many`); a
        refusal is raised."""
        [outcome] = await self.record_many([(via, draft)])
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    async def record_many(
        self, items: Sequence[tuple[str, EventDraft]]
    ) -> list[EventResult | DomainError]:
        """Apply events, each with the name of the API key it came with, in one unit of work
        and in order, as if one after the other. An unknown contact is created (source: the
        event's, else the key's name) and given an owner, who gets a notice; then the rule of
        the event's trigger moves the contact if the transition rules allow it. The same
        idempotency key again answers as the first time and changes nothing.

        Each event is all or nothing: a refused one (InvalidEvent naming the field,
        IdempotencyKeyReused) writes nothing and the others go on. Events of other workers
        that change the same contacts or keys meanwhile make the attempt fail as a whole; the
        next attempt sees what they committed."""
        # What stays EventConflict is an event whose every attempt lost to other workers.
        outcomes: list[EventResult | DomainError] = [EventConflict()] * len(items)
        valid: list[tuple[int, str, _Event]] = []
        for index, (via, draft) in enumerate(items):
            try:
                valid.append((index, via, self._normalized(draft)))
            except InvalidEvent as refusal:
                outcomes[index] = refusal
        if not valid:
            return outcomes
        for _attempt in range(ATTEMPTS):
            try:
                applied = await self._apply(valid)
            except (Conflict, DuplicateContact, StaleVersion):
                continue
            for index, outcome in applied.items():
                outcomes[index] = outcome
            break
        return outcomes

    async def rules(self) -> list[Rule]:
        async with self._uow(read_only=True) as uow:
            stages = {s.id: s for s in await uow.stages.list(include_archived=True) if s.id}
            return rule_table(await uow.rules.chosen(), stages)

    async def set_rule(self, actor: User, trigger: str, stage_id: int | None) -> None:
        """Make `trigger` move contacts to a stage, or (None) change no stage."""
        require_role(actor, Role.ADMIN)
        trigger = parse_trigger(trigger)
        async with self._uow() as uow:
            if stage_id is not None:
                stage = await uow.stages.get(stage_id)
                if stage is None or stage.archived:
                    raise StageNotFound(f"#{stage_id}")
            await uow.rules.choose(trigger, stage_id)
            await uow.commit()

    async def reset_rule(self, actor: User, trigger: str) -> None:
        """Back to the default: the stage named as in the `amis` template."""
        require_role(actor, Role.ADMIN)
        trigger = parse_trigger(trigger)
        async with self._uow() as uow:
            await uow.rules.reset(trigger)
            await uow.commit()

    @property
    def routing(self) -> LeadRouting:
        return self._routing

    async def pending_notices(self, limit: int = 1000) -> list[Notice]:
        async with self._uow(read_only=True) as uow:
            return await uow.notices.pending(limit)

    async def notices_sent(self, notice_ids: list[int]) -> None:
        async with self._uow() as uow:
            await uow.notices.mark_sent(notice_ids, self._clock())
            await uow.commit()

    async def _apply(
        self, events: list[tuple[int, str, _Event]]
    ) -> dict[int, EventResult | DomainError]:
        async with self._uow() as uow:
            batch = _Batch(uow, self._region, self._policy, self._routing, self._clock())
            await batch.load([(via, event) for _, via, event in events])
            applied: dict[int, _Applied | DomainError] = {}
            for index, via, event in events:
                try:
                    applied[index] = await batch.apply(via, event)
                except DomainError as refusal:  # checked before the event changed anything
                    applied[index] = refusal
            if batch.applied:  # replays and refusals alone change nothing
                await batch.write()
            answered = await batch.results([a for a in applied.values() if isinstance(a, _Applied)])
            if batch.applied:
                await uow.commit()
        return {
            index: answered[id(outcome)] if isinstance(outcome, _Applied) else outcome
            for index, outcome in applied.items()
        }

    def _normalized(self, draft: EventDraft) -> _Event:
        try:
            kind = EventKind(draft.kind)
        except ValueError:
            kinds = ", ".join(kind.value for kind in EventKind)
            raise InvalidEvent("event", f"unknown event; use one of {kinds}") from None
        phone = _field("phone", draft.phone, lambda raw: normalize_phone(raw, self._region))
        email = _field("email", draft.email, normalize_email)
        external_id = _text("external_id", draft.external_id, EXTERNAL_ID_MAX)
        if not (phone or email or external_id):
            raise InvalidEvent("phone", "an event needs the contact's phone, email or external_id")
        return _Event(
            kind=kind,
            phone=phone,
            email=email,
            external_id=external_id,
            name=_text("name", draft.name, NAME_MAX),
            company=_text("company", draft.company, NAME_MAX),
            source=_text("source", draft.source, SOURCE_MAX),
            value=_value(draft.value),
            custom_fields=_custom_field_values(draft.custom_fields),
            idempotency_key=_text("idempotency_key", draft.idempotency_key, KEY_MAX),
        )


@dataclass(slots=True)
class _Applied:
    """An event applied in memory: the stored event to be (or its first time, for a replay),
    the contact as the event left it, and what else it writes."""

    event: ReceivedEvent
    contact: Contact  # the batch's contact, given its id when written
    snapshot: Contact  # the contact right after this event, for the answer
    owner: User | None = None
    notices: list[Notice] = field(default_factory=list)
    replayed: bool = False


class _Batch:
    """Events of one unit of work: what they need is read once, they are applied in memory
    one after the other, and what they change is written at the end in a few statements."""

    def __init__(
        self, uow: UnitOfWork, region: str, policy: Policy, routing: LeadRouting, now: datetime
    ) -> None:
        self.uow = uow
        self.region = region
        self.policy = policy
        self.routing = routing
        self.now = now
        self.stored: dict[tuple[str, str], ReceivedEvent] = {}
        self.taken: dict[tuple[str, str], _Applied] = {}
        self.contacts: dict[tuple[str, str], Contact] = {}  # by ("phone", value) and the like
        self.new: list[tuple[Contact, str | None]] = []  # with their company names
        self.created: set[int] = set()  # id() of the new contacts
        self.read: dict[int, Contact] = {}  # copies of the found contacts, by id(contact)
        self.changed: dict[int, Contact] = {}  # found contacts to write back, by id(contact)
        self.revenue: dict[int, int] = {}  # revenue events so far, by id(contact)
        self.changes: list[tuple[Contact, StageChange]] = []
        self.applied: list[_Applied] = []
        self.stages: dict[int, Stage] = {}
        self.rules: dict[str, Rule] = {}
        self.people: list[User] | None = None
        self.defined: list[CustomFieldDef] | None = None
        self.last_given: int | None = None
        self.turn_read = self.turn_taken = False

    async def load(self, events: list[tuple[str, _Event]]) -> None:
        keys = {(via, e.idempotency_key) for via, e in events if e.idempotency_key is not None}
        self.stored = await self.uow.events.by_keys(keys)
        found = await self.uow.contacts.find_many(
            phones=[e.phone for _, e in events if e.phone],
            emails=[e.email for _, e in events if e.email],
            external_ids=[e.external_id for _, e in events if e.external_id],
            lock=True,
        )
        for contact in found:
            self._remember(contact)
            self.read[id(contact)] = _copy(contact)
        if any(e.kind is EventKind.REVENUE_BOOKED for _, e in events):
            counts = await self.uow.events.counts({_id(c) for c in found}, EventKind.REVENUE_BOOKED)
            self.revenue = {id(c): counts.get(_id(c), 0) for c in found}
        stages = await self.uow.stages.list(include_archived=True)
        self.stages = {stage.id: stage for stage in stages if stage.id is not None}
        rules = rule_table(await self.uow.rules.chosen(), self.stages)
        self.rules = {rule.trigger: rule for rule in rules}

    async def apply(self, via: str, event: _Event) -> _Applied:
        fingerprint = event.fingerprint()
        key = (via, event.idempotency_key) if event.idempotency_key is not None else None
        if key is not None and (key in self.taken or key in self.stored):
            return await self._replay(key, fingerprint)
        contact = self._known(event)
        custom = await self._custom_fields(event)
        created = contact is None
        owner: User | None = None
        notices: list[Notice] = []
        if contact is None:
            contact, owner, notices = await self._new_lead(via, event, custom)
            changed = False
        else:
            changed = await self._fill_blanks(contact, event, custom)
        earlier_revenue = self.revenue.get(id(contact), 0)
        if event.kind is EventKind.REVENUE_BOOKED:
            self.revenue[id(contact)] = earlier_revenue + 1
        trigger = trigger_of(event.kind, earlier_revenue)
        rule = self.rules[trigger]
        from_stage_id = contact.stage_id
        current = self.stages.get(from_stage_id) if from_stage_id else None
        decision = decide(current, rule.stage, trigger=trigger, policy=self.policy)
        if decision.outcome is Outcome.MOVED:
            assert rule.stage is not None
            contact.stage_id = rule.stage.id
            contact.stage_entered_at = contact.last_activity_at = self.now
            change = StageChange(
                0,
                from_stage_id,
                contact.stage_id,
                self.now,
                None,
                Source.AUTOMATION,
                decision.reason,
            )
            self.changes.append((contact, change))
            changed = True
        if changed and not created:
            if id(contact) not in self.created:  # a new one is inserted as the batch leaves it
                self.changed[id(contact)] = contact
            contact.version += 1
            contact.updated_by_id = None
        stored = ReceivedEvent(
            None,
            event.kind,
            0,
            self.now,
            via,
            decision.outcome,
            fingerprint,
            idempotency_key=event.idempotency_key,
            source=event.source,
            value=event.value,
            created_contact=created,
            from_stage_id=from_stage_id,
            to_stage_id=rule.stage.id if rule.stage else None,
            detail=decision.detail,
        )
        snapshot = _copy(contact)
        applied = _Applied(stored, contact, snapshot, owner, notices)
        self.applied.append(applied)
        if key is not None:
            self.taken[key] = applied
        return applied

    async def write(self) -> None:
        """Everything the applied events changed, in bulk."""
        if self.new:
            names = {company for _, company in self.new if company}
            companies = await self.uow.contacts.company_ids(names, create=True)
            for contact, company in self.new:
                contact.company_id = companies[company] if company else None
            await self.uow.contacts.add_many([contact for contact, _ in self.new])
        writes = [
            ContactWrite(contact, read.version, _changed_fields(read, contact))
            for contact, read in ((c, self.read[key]) for key, c in self.changed.items())
        ]
        if writes and await self.uow.contacts.update_many(writes):
            raise StaleVersion(None)
        await self.uow.history.add_many(
            [replace(change, contact_id=_id(contact)) for contact, change in self.changes]
        )
        for applied in self.applied:
            applied.event.contact_id = applied.snapshot.id = _id(applied.contact)
            for notice in applied.notices:
                notice.contact_id = _id(applied.contact)
        await self.uow.events.add_many([applied.event for applied in self.applied])
        await self.uow.notices.add_many([n for applied in self.applied for n in applied.notices])
        if self.turn_taken and self.last_given is not None:
            await self.uow.turns.record(self.routing.queue, self.last_given)

    async def results(self, answers: list[_Applied]) -> dict[int, EventResult]:
        """The answer to each applied event (by id()), its contact named as of that event."""
        company_ids = {a.snapshot.company_id for a in answers if a.snapshot.company_id}
        companies = await self.uow.companies.names(company_ids)
        owner_ids = {a.snapshot.owner_id for a in answers if a.snapshot.owner_id and not a.owner}
        owners = await self.uow.users.get_many(owner_ids)
        results = {}
        for applied in answers:
            contact = applied.snapshot
            owner = applied.owner or (owners.get(contact.owner_id) if contact.owner_id else None)
            details = ContactDetails(
                contact,
                self.stages.get(contact.stage_id) if contact.stage_id else None,
                companies.get(contact.company_id) if contact.company_id else None,
                owner,
            )
            results[id(applied)] = EventResult(
                applied.event, details, applied.replayed, applied.notices
            )
        return results

    async def _replay(self, key: tuple[str, str], fingerprint: str) -> _Applied:
        if key in self.taken:
            first = self.taken[key]
            if first.event.fingerprint != fingerprint:
                raise IdempotencyKeyReused()
            return _Applied(first.event, first.contact, first.snapshot, replayed=True)
        stored = self.stored[key]
        if stored.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        contact = await self.uow.contacts.get(stored.contact_id)
        if contact is None:  # deleted since (an import undone)
            raise ContactNotFound(f"#{stored.contact_id}")
        return _Applied(stored, contact, contact, replayed=True)

    def _known(self, event: _Event) -> Contact | None:
        """The contact the event is about. When its identifiers name different contacts, the
        external id wins, then the email, then the phone."""
        for name in ("external_id", "email", "phone"):
            value = getattr(event, name)
            if value is not None and (name, value) in self.contacts:
                return self.contacts[(name, value)]
        return None

    def _remember(self, contact: Contact) -> None:
        for name in ("external_id", "email", "phone"):
            value = getattr(contact, name)
            if value is not None:
                self.contacts[(name, value)] = contact

    async def _new_lead(
        self, via: str, event: _Event, custom: dict[str, str]
    ) -> tuple[Contact, User | None, list[Notice]]:
        """A contact for an unknown person, with its owner; notices for the owner, or for the
        admins when nobody can own it."""
        draft = ContactDraft(
            name=event.name,
            phone=event.phone,
            email=event.email,
            external_id=event.external_id,
            company=event.company,
            source=event.source or via,
            value=str(event.value) if event.value is not None else None,
        )
        contact = new_contact(draft, region=self.region, now=self.now)
        contact.custom_fields = custom
        if self.people is None:
            self.people = await self.uow.users.list()
        owner = await self._owner(self.people, contact.source)
        contact.owner_id = owner.id if owner else None
        if owner is not None:
            told = [owner]
        else:
            told = [u for u in self.people if u.active and u.role is Role.ADMIN]
        notices = [Notice(None, _user_id(u), 0, self.now) for u in told if u.telegram_id]
        self.new.append((contact, event.company))
        self.created.add(id(contact))
        self._remember(contact)
        return contact, owner, notices

    async def _owner(self, people: list[User], source: str | None) -> User | None:
        ref = self.routing.owner_for(source)
        if ref is not None:
            try:
                fixed = await user_by_ref(self.uow, ref)
            except DomainError:
                fixed = None  # a stale setting must not lose the lead: it goes in turn instead
            if fixed is not None and fixed.active:
                return fixed
        team = fold(self.routing.team or "")
        agents = sorted(
            (
                u
                for u in people
                if u.active and u.role is Role.AGENT and (not team or fold(u.team or "") == team)
            ),
            key=_user_id,
        )
        if not agents:
            return None
        if not self.turn_read:
            self.last_given = await self.uow.turns.last(self.routing.queue)
            self.turn_read = True
        last = self.last_given
        chosen = next((a for a in agents if last is not None and _user_id(a) > last), agents[0])
        self.last_given, self.turn_taken = _user_id(chosen), True
        return chosen

    async def _fill_blanks(self, contact: Contact, event: _Event, custom: dict[str, str]) -> bool:
        """An event never overwrites what people entered; it fills what the contact lacks.
        Returns whether anything changed."""
        before = (
            contact.name,
            contact.company_id,
            contact.source,
            contact.value,
            dict(contact.custom_fields),
        )
        contact.name = contact.name or event.name
        if contact.company_id is None and event.company:
            companies = await self.uow.contacts.company_ids([event.company], create=True)
            contact.company_id = companies[event.company]
        contact.source = contact.source or event.source
        contact.value = contact.value if contact.value is not None else event.value
        for key, value in custom.items():
            contact.custom_fields.setdefault(key, value)
        after = (contact.name, contact.company_id, contact.source, contact.value)
        return after != before[:4] or contact.custom_fields != before[4]

    async def _custom_fields(self, event: _Event) -> dict[str, str]:
        """The event's custom fields in their defined spelling; a defined field refusing a
        value names it."""
        if not event.custom_fields:
            return {}
        if self.defined is None:
            self.defined = await self.uow.fields.list()
        try:
            return fields.canonical_values(self.defined, event.custom_fields)
        except fields.InvalidFieldValue as refusal:
            raise InvalidEvent(f"custom_fields.{refusal.field.name}", refusal.message) from None


def _field(name: str, raw: str | None, normalize: Callable[[str], str]) -> str | None:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return normalize(text)
    except DomainError as refusal:
        raise InvalidEvent(name, refusal.message) from None


def _text(name: str, raw: str | None, limit: int) -> str | None:
    text = clean_name(raw or "")
    if len(text) > limit:
        raise InvalidEvent(name, f"at most {limit} characters")
    return text or None


def _value(raw: Decimal | str | None) -> Decimal | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        value = Decimal(str(raw).strip())
    except ArithmeticError:
        raise InvalidEvent("value", "not an amount") from None
    if not value.is_finite() or value < 0 or value >= VALUE_LIMIT:
        raise InvalidEvent("value", f"an amount from 0 up to {VALUE_LIMIT:,}")
    if value != value.quantize(Decimal("0.01")):
        raise InvalidEvent("value", "at most 2 decimals")
    return value


def _custom_field_values(raw: Mapping[str, str]) -> dict[str, str]:
    if len(raw) > FIELDS_MAX:
        raise InvalidEvent("custom_fields", f"at most {FIELDS_MAX} fields")
    cleaned = {}
    for key, value in raw.items():
        name = clean_name(str(key))
        if not name or len(name) > FIELD_NAME_MAX:
            raise InvalidEvent("custom_fields", f"names of 1 to {FIELD_NAME_MAX} characters")
        text = str(value).strip()
        if len(text) > FIELD_VALUE_MAX:
            raise InvalidEvent(f"custom_fields.{name}", f"at most {FIELD_VALUE_MAX} characters")
        if text:
            cleaned[name] = text
    return cleaned


def _id(contact: Contact) -> int:
    assert contact.id is not None, "stored contacts have ids"
    return contact.id


def _user_id(user: User) -> int:
    assert user.id is not None, "stored users have ids"
    return user.id


def _copy(contact: Contact) -> Contact:
    return replace(contact, tags=list(contact.tags), custom_fields=dict(contact.custom_fields))


def _changed_fields(before: Contact, after: Contact) -> frozenset[str]:
    names = (f.name for f in dataclasses.fields(Contact))
    return frozenset(name for name in names if getattr(before, name) != getattr(after, name))
