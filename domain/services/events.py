"""Events from web forms, landing pages, email tools and accounting (ISSUE 7): each finds or
creates its contact, follows the automation rule of its trigger, and is stored with what came of
it — all in one unit of work, so that nothing is half-applied and a replay has no effect."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from domain import fields
from domain.access import require_role
from domain.automation import Rule, decide, parse_trigger, rule_table, trigger_of
from domain.errors import (
    ContactNotFound,
    DomainError,
    DuplicateContact,
    IdempotencyKeyReused,
    InvalidEvent,
    StageNotFound,
    StaleVersion,
)
from domain.model import (
    Contact,
    EventKind,
    Notice,
    Outcome,
    ReceivedEvent,
    Role,
    Source,
    StageChange,
    User,
    utcnow,
)
from domain.phones import normalize_email, normalize_phone
from domain.ports import Clock, DuplicateEvent, UnitOfWork, UnitOfWorkFactory
from domain.services.contacts import (
    ContactDetails,
    ContactDraft,
    new_contact,
    user_by_ref,
    with_names,
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
        """Apply an event that came with the API key named `via`. An unknown contact is created
        (source: the event's, else the key's name) and given an owner, who gets a notice; then
        the rule of the event's trigger moves the contact if the transition rules allow it.
        The same idempotency key again returns the first result and changes nothing; with a
        different event it raises IdempotencyKeyReused."""
        event = self._normalized(draft)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._apply(via, event)
            except (DuplicateEvent, DuplicateContact, StaleVersion):
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def rules(self) -> list[Rule]:
        async with self._uow() as uow:
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
        async with self._uow() as uow:
            return await uow.notices.pending(limit)

    async def notices_sent(self, notice_ids: list[int]) -> None:
        async with self._uow() as uow:
            await uow.notices.mark_sent(notice_ids, self._clock())
            await uow.commit()

    async def _apply(self, via: str, event: _Event) -> EventResult:
        now = self._clock()
        fingerprint = event.fingerprint()
        async with self._uow() as uow:
            if event.idempotency_key is not None:
                earlier = await uow.events.by_key(via, event.idempotency_key)
                if earlier is not None:
                    if earlier.fingerprint != fingerprint:
                        raise IdempotencyKeyReused()
                    return await _replay(uow, earlier)
            contact = await self._existing(uow, event)
            created = contact is None
            notices: list[Notice] = []
            if contact is None:
                contact, notices = await self._new_lead(uow, via, event, now)
                changed = False
            else:
                changed = await self._fill_blanks(uow, contact, event)
            stages = {s.id: s for s in await uow.stages.list(include_archived=True) if s.id}
            earlier_revenue = 0
            if event.kind is EventKind.REVENUE_BOOKED and not created:
                earlier_revenue = await uow.events.count(_id(contact), EventKind.REVENUE_BOOKED)
            trigger = trigger_of(event.kind, earlier_revenue)
            rules = await uow.rules.chosen()
            rule = next(r for r in rule_table(rules, stages) if r.trigger == trigger)
            from_stage_id = contact.stage_id
            current = stages.get(from_stage_id) if from_stage_id else None
            decision = decide(current, rule.stage, trigger=trigger, policy=self._policy)
            moved = decision.outcome is Outcome.MOVED
            if moved:
                assert rule.stage is not None
                contact.stage_id = rule.stage.id
                contact.stage_entered_at = now
                contact.last_activity_at = now
            if created:
                contact = await uow.contacts.add(contact, event.company)
            elif moved or changed:
                version = contact.version
                contact.version += 1
                contact.updated_by_id = None
                if not await uow.contacts.update(contact, expected_version=version):
                    raise StaleVersion(None)
            if moved:
                await uow.history.add(
                    StageChange(
                        contact_id=_id(contact),
                        from_stage_id=from_stage_id,
                        to_stage_id=contact.stage_id,
                        at=now,
                        by_user_id=None,
                        source=Source.AUTOMATION,
                        reason=decision.reason,
                    )
                )
            stored = await uow.events.add(
                ReceivedEvent(
                    None,
                    event.kind,
                    _id(contact),
                    now,
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
            )
            for notice in notices:
                notice.contact_id = _id(contact)
                await uow.notices.add(notice)
            details = (await with_names(uow, [contact]))[0]
            await uow.commit()
        return EventResult(stored, details, False, notices)

    @staticmethod
    async def _existing(uow: UnitOfWork, event: _Event) -> Contact | None:
        """The contact the event is about, locked. When its identifiers name different contacts,
        the external id wins, then the email, then the phone."""
        found = await uow.contacts.find_by_identifiers(
            phone=event.phone, email=event.email, external_id=event.external_id
        )
        for name in ("external_id", "email", "phone"):
            value = getattr(event, name)
            match = next((c for c in found if value and getattr(c, name) == value), None)
            if match is not None:
                return await uow.contacts.lock(_id(match))
        return None

    async def _new_lead(
        self, uow: UnitOfWork, via: str, event: _Event, now: datetime
    ) -> tuple[Contact, list[Notice]]:
        """A contact for an unknown person, with an owner; notices for the owner, or for the
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
        contact = new_contact(draft, region=self._region, now=now)
        contact.custom_fields = await _custom_fields(uow, event)
        people = await uow.users.list()
        owner = await self._owner(uow, people, contact.source)
        contact.owner_id = owner.id if owner else None
        told = [owner] if owner else [u for u in people if u.active and u.role is Role.ADMIN]
        notices = [Notice(None, _user_id(u), 0, now) for u in told if u.telegram_id is not None]
        return contact, notices

    async def _owner(self, uow: UnitOfWork, people: list[User], source: str | None) -> User | None:
        ref = self._routing.owner_for(source)
        if ref is not None:
            try:
                fixed = await user_by_ref(uow, ref)
            except DomainError:
                fixed = None  # a stale setting must not lose the lead: it goes in turn instead
            if fixed is not None and fixed.active:
                return fixed
        team = fold(self._routing.team or "")
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
        queue = self._routing.queue
        last = await uow.turns.last(queue)
        chosen = next((a for a in agents if last is not None and _user_id(a) > last), agents[0])
        await uow.turns.record(queue, _user_id(chosen))
        return chosen

    @staticmethod
    async def _fill_blanks(uow: UnitOfWork, contact: Contact, event: _Event) -> bool:
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
            companies = await uow.contacts.company_ids([event.company], create=True)
            contact.company_id = companies[event.company]
        contact.source = contact.source or event.source
        contact.value = contact.value if contact.value is not None else event.value
        for key, value in (await _custom_fields(uow, event)).items():
            contact.custom_fields.setdefault(key, value)
        after = (
            contact.name,
            contact.company_id,
            contact.source,
            contact.value,
            contact.custom_fields,
        )
        return after != before

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


async def _replay(uow: UnitOfWork, event: ReceivedEvent) -> EventResult:
    contact = await uow.contacts.get(event.contact_id)
    if contact is None:  # deleted since (an import undone)
        raise ContactNotFound(f"#{event.contact_id}")
    return EventResult(event, (await with_names(uow, [contact]))[0], True, [])


async def _custom_fields(uow: UnitOfWork, event: _Event) -> dict[str, str]:
    """The event's custom fields in their defined spelling; a defined field refusing a value
    names it."""
    try:
        return fields.canonical_values(await uow.fields.list(), event.custom_fields)
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
