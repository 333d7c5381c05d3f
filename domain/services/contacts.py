"""Use cases of contacts: create without duplicates, find, read, change stage, log activities."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import TypeGuard

from domain import fields
from domain.access import Scope
from domain.errors import (
    AccessDenied,
    ContactNotFound,
    DuplicateContact,
    InvalidInput,
    NotFound,
    NothingToUndo,
    StageNotFound,
    StaleVersion,
    UserNotFound,
)
from domain.model import (
    Activity,
    ActivityKind,
    Category,
    Company,
    Contact,
    CustomFieldDef,
    Outcome,
    Role,
    Source,
    Stage,
    StageChange,
    TimelineEntry,
    User,
    utcnow,
)
from domain.phones import normalize_email, normalize_phone, parse_phone
from domain.ports import Clock, ContactFilter, SearchCriteria, UnitOfWork, UnitOfWorkFactory
from domain.stages import Pipeline
from domain.text import clean_name, words
from domain.transitions import Policy, leaves_closed, plan_move

NAME_MAX = 200
TEXT_MAX = 4000
TAG_MAX = 40
TAGS_MAX = 20
# A backdated change may not lie in the future; allow for clocks that disagree a little.
CLOCK_SKEW = timedelta(minutes=5)
# How long after a stage change the person who made it may undo it with one tap.
UNDO_WITHIN = timedelta(minutes=5)
# The reason an undoing change records, whoever reads it (the timeline translates it).
UNDO_REASON = "undone"
# A contact's timeline shows its latest events only: a busy web page can report thousands.
TIMELINE_EVENTS = 50
# The fields each single-contact write changes (ContactWrite.changed): storage writes only
# those columns, besides the version and who updated the contact.
_MOVED = frozenset({"stage_id", "stage_entered_at", "last_activity_at"})
_OWNER = frozenset({"owner_id"})
_ACTIVE = frozenset({"last_activity_at"})


@dataclass(slots=True)
class ContactDraft:
    """What a person or a file says about a new contact, before normalization."""

    name: str | None = None
    phone: str | None = None
    email: str | None = None
    external_id: str | None = None
    company: str | None = None
    source: str | None = None
    stage: str | None = None
    owner: str | None = None
    value: str | None = None
    lost_reason: str | None = None
    tags: list[str] = field(default_factory=list)
    custom_fields: dict[str, str] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContactDetails:
    """A contact with the names a person reads: stage, company and owner."""

    contact: Contact
    stage: Stage | None
    company: str | None
    owner: User | None


@dataclass(frozen=True, slots=True)
class ContactCard:
    details: ContactDetails
    open_tasks: list[Activity]
    latest: list[TimelineEntry]
    timeline_size: int
    people: dict[int, User] = field(default_factory=dict)  # who wrote or moved what it shows


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a typed query shows: the matches, and the card of the only one if there is one."""

    found: list[ContactDetails]
    card: ContactCard | None


@dataclass(frozen=True, slots=True)
class CompanyCard:
    company: Company
    contacts: list[ContactDetails]


@dataclass(frozen=True, slots=True)
class StageMoveResult:
    contact: Contact
    change: StageChange | None  # None when the contact already was in that stage
    # The actor may undo the move that took the contact there: the one made now, or, for a
    # second tap on the same stage, the one the first tap made.
    undoable: bool = False

    @property
    def changed(self) -> bool:
        return self.change is not None


@dataclass(frozen=True, slots=True)
class StageChoice:
    """A stage button pressed on a card: the move done and the card after it, or, with nothing
    moved, what the person must say first (`asks`)."""

    card: ContactCard
    target: Stage
    move: StageMoveResult | None = None
    asks: StageQuestion | None = None


class StageQuestion(StrEnum):
    LOST_REASON = "lost"  # a lost stage needs a reason
    REOPEN_REASON = "reopen"  # so does leaving a won or lost stage
    OTHER_STAGE = "deleted"  # the stage was deleted meanwhile


class ContactService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        default_region: str = "VN",
        policy: Policy | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._uow = uow
        self._region = default_region
        self._policy = policy or Policy()
        self._clock = clock

    async def add(
        self, actor: User, draft: ContactDraft, *, source: Source = Source.MANUAL
    ) -> Contact:
        """Create a contact; a phone, email or external id that exists raises DuplicateContact
        naming the contact that has it, and nothing is created."""
        now = self._clock()
        contact = new_contact(draft, region=self._region, now=now)
        async with self._uow() as uow:
            await self._refuse_duplicates(uow, contact)
            contact.custom_fields = fields.canonical_values(
                await uow.fields.list(), contact.custom_fields
            )
            contact.owner_id = await self._owner_id(uow, actor, draft.owner)
            stage = await self._stage_named(uow, draft.stage) if draft.stage else None
            move = plan_move(
                None,
                stage,
                role=actor.role,
                source=source,
                reason=draft.lost_reason,
                policy=self._policy,
            )
            contact.updated_by_id = actor.id
            if move is not None:
                contact.stage_id = stage.id if stage else None
                contact.stage_entered_at = contact.created_at
            company = clean_name(draft.company) if draft.company else None
            contact = await uow.contacts.add(contact, company or None)
            if move is not None:
                await uow.history.add(
                    StageChange(
                        contact_id=_id(contact),
                        from_stage_id=None,
                        to_stage_id=contact.stage_id,
                        at=contact.created_at,
                        by_user_id=actor.id,
                        source=source,
                        reason=move.reason,
                    )
                )
            await uow.commit()
        return contact

    async def find(
        self, actor: User, query: str, *, limit: int = 10, offset: int = 0
    ) -> list[ContactDetails]:
        """Search by phone in any format, email, external id, or name/company words ignoring
        case and diacritics, within what the actor may see."""
        criteria = self.criteria(query)
        if criteria is None:
            return []
        async with self._uow(read_only=True) as uow:
            found = await uow.contacts.search(criteria, Scope.of(actor), limit=limit, offset=offset)
            return await with_names(uow, found)

    async def look_up(self, actor: User, query: str, *, limit: int = 10) -> Lookup:
        """`find`, and the card of its match when it has exactly one, read together."""
        criteria = self.criteria(query)
        if criteria is None:
            return Lookup([], None)
        async with self._uow(read_only=True) as uow:
            found = await uow.contacts.search(criteria, Scope.of(actor), limit=limit, offset=0)
            if len(found) == 1:
                card = await self._card_of(uow, found[0], None)
                return Lookup([card.details], card)
            return Lookup(await with_names(uow, found), None)

    def criteria(self, query: str) -> SearchCriteria | None:
        text = query.strip()
        if not text:
            return None
        email = text.lower() if "@" in text and " " not in text else None
        phone = parse_phone(text, self._region)
        return SearchCriteria(
            phone=phone,
            email=email,
            external_id=text if len(text) <= 100 and " " not in text else None,
            # The words of an email or a phone number would find strangers, slowly.
            words=() if email or phone else tuple(words(text))[:8],
        )

    async def get(self, actor: User, contact_id: int) -> ContactDetails:
        async with self._uow(read_only=True) as uow:
            contact = await self._visible(uow, actor, contact_id)
            return (await with_names(uow, [contact]))[0]

    async def resolve(self, actor: User, ref: str) -> ContactDetails:
        """A contact named by phone (any format), email, external id or `#id`."""
        text = ref.strip()
        async with self._uow(read_only=True) as uow:
            contact: Contact | None = None
            if text.startswith("#") and text[1:].isdigit():
                contact = await uow.contacts.get(int(text[1:]))
            else:
                email = text.lower() if "@" in text else None
                matches = await uow.contacts.find_by_identifiers(
                    phone=parse_phone(text, self._region), email=email, external_id=text
                )
                contact = matches[0] if len(matches) == 1 else None
                if len(matches) > 1:
                    raise InvalidInput(f"{text!r} matches several contacts; use #id.")
            if contact is None or not await _may_touch(uow, actor, contact):
                raise ContactNotFound(text)
            return (await with_names(uow, [contact]))[0]

    async def set_stage(
        self,
        actor: User,
        contact_id: int,
        stage_id: int | None,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
        source: Source = Source.MANUAL,
        at: datetime | None = None,
        operation_id: int | None = None,
    ) -> StageMoveResult:
        """Move one contact, applying every transition rule. `expected_version` makes the change
        conditional on nobody having changed the contact since it was read; `at` backdates."""
        async with self._uow() as uow:
            contact = await self._visible(uow, actor, contact_id)
            stages = await _stages_by_id(uow)
            result = await self._set_stage(
                uow,
                actor,
                contact,
                stages,
                stage_id,
                reason,
                expected_version,
                source,
                at,
                operation_id,
            )
            if result.changed:
                await uow.commit()
        return result

    async def undo_move(
        self, actor: User, contact_id: int, *, expected_version: int
    ) -> StageMoveResult:
        """Put a contact back where the actor's own latest stage change took it from, if that
        change is the contact's latest (the contact still at `expected_version`, the version it
        left) and at most UNDO_WITHIN old. An undo skips the rules of a move, so everything it
        does is decided from what is stored, not from what a button says."""
        async with self._uow() as uow:
            contact = await self._visible(uow, actor, contact_id)
            changes = await uow.history.for_contact(contact_id)
            latest = changes[-1] if changes else None
            if contact.version != expected_version or not self._undoable(latest, contact, actor):
                raise NothingToUndo()
            before = changes[-2] if len(changes) > 1 else None
            result = await self._set_stage(
                uow,
                actor,
                contact,
                await _stages_by_id(uow),
                latest.from_stage_id,
                UNDO_REASON,
                expected_version,
                Source.UNDO,
                # Back in the stage since it entered it, not since the undo.
                entered_at=(
                    before.at if before and before.to_stage_id == latest.from_stage_id else None
                ),
            )
            await uow.commit()
        return result

    async def move(
        self,
        actor: User,
        contact_id: int,
        stage_id: int | None,
        *,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> tuple[StageMoveResult, ContactCard]:
        """A move made from a card, and the card after it: one unit of work."""
        async with self._uow() as uow:
            contact = await self._visible(uow, actor, contact_id)
            stages = await _stages_by_id(uow)
            result = await self._set_stage(
                uow, actor, contact, stages, stage_id, reason, expected_version, Source.MANUAL
            )
            card = await self._card_of(uow, contact, stages)
            if result.changed:
                await uow.commit()
        return result, card

    async def choose_stage(
        self, actor: User, contact_id: int, stage_id: int, *, expected_version: int
    ) -> StageChoice:
        """A stage chosen on a card: moved at once (and the card after it), unless the move
        needs a reason first or the stage is gone. One unit of work."""
        async with self._uow() as uow:
            contact = await self._visible(uow, actor, contact_id)
            stages = await _stages_by_id(uow)
            target = stages.get(stage_id)
            if target is None:
                raise StageNotFound(f"#{stage_id}")
            current = stages.get(contact.stage_id) if contact.stage_id else None
            asks = None
            if target.archived:
                asks = StageQuestion.OTHER_STAGE
            elif current is None or current.id != target.id:
                if leaves_closed(current, target):
                    asks = StageQuestion.REOPEN_REASON
                elif target.category is Category.LOST:
                    asks = StageQuestion.LOST_REASON
            if asks is not None:
                return StageChoice(await self._card_of(uow, contact, stages), target, asks=asks)
            result = await self._set_stage(
                uow, actor, contact, stages, stage_id, None, expected_version, Source.MANUAL
            )
            card = await self._card_of(uow, contact, stages)
            if result.changed:
                await uow.commit()
        return StageChoice(card, target, move=result)

    async def _set_stage(
        self,
        uow: UnitOfWork,
        actor: User,
        contact: Contact,
        stages: dict[int | None, Stage],
        stage_id: int | None,
        reason: str | None,
        expected_version: int | None,
        source: Source,
        at: datetime | None = None,
        operation_id: int | None = None,
        entered_at: datetime | None = None,
    ) -> StageMoveResult:
        """set_stage's work, in the caller's unit of work, not committed. `entered_at`: since
        when the contact is in the stage, if before the change (an undo's)."""
        now = self._clock()
        contact_id = _id(contact)
        if contact.stage_id == stage_id:
            # Already there, whatever happened since the button was drawn: a second tap, or the
            # same update delivered again after its move committed, is told so, not refused.
            latest = await uow.history.latest(contact_id) if source is Source.MANUAL else None
            return StageMoveResult(contact, None, self._undoable(latest, contact, actor))
        if expected_version is not None and contact.version != expected_version:
            raise await _stale(uow, actor, contact.updated_by_id)
        current = stages.get(contact.stage_id) if contact.stage_id else None
        target = stages.get(stage_id) if stage_id is not None else None
        if stage_id is not None and target is None:
            raise StageNotFound(f"#{stage_id}")
        move = plan_move(
            current,
            target,
            role=actor.role,
            source=source,
            reason=reason,
            policy=self._policy,
        )
        if move is None:
            return StageMoveResult(contact, None)
        when = await self._change_time(uow, contact, at, now)
        change = StageChange(
            contact_id=contact_id,
            from_stage_id=contact.stage_id,
            to_stage_id=stage_id,
            at=when,
            by_user_id=actor.id,
            source=source,
            reason=move.reason,
            operation_id=operation_id,
        )
        version = contact.version
        contact.stage_id = stage_id
        contact.stage_entered_at = min(entered_at or when, when)
        contact.last_activity_at = max(when, contact.last_activity_at or when)
        contact.version += 1
        contact.updated_by_id = actor.id
        if not await uow.contacts.update(contact, expected_version=version, changed=_MOVED):
            fresh = await uow.contacts.get(contact_id)
            raise await _stale(uow, actor, fresh.updated_by_id if fresh else None)
        await uow.history.add(change)
        return StageMoveResult(contact, change, self._undoable(change, contact, actor))

    def _undoable(
        self, latest: StageChange | None, contact: Contact, actor: User
    ) -> TypeGuard[StageChange]:
        """Whether `latest`, the contact's latest stage change, is one the actor may undo."""
        return (
            latest is not None
            and latest.source is not Source.UNDO
            and latest.by_user_id == actor.id
            and latest.to_stage_id == contact.stage_id
            and not _is_creation(latest, contact)
            and self._clock() - latest.at <= UNDO_WITHIN
        )

    async def card(self, actor: User, contact_id: int, *, latest: int = 5) -> ContactCard:
        """What a contact's card shows: details, open tasks and the latest timeline entries,
        read in one unit of work (cards are drawn after every button press)."""
        async with self._uow(read_only=True) as uow:
            return await self._card(uow, actor, contact_id, latest)

    async def _card(
        self, uow: UnitOfWork, actor: User, contact_id: int, latest: int = 5
    ) -> ContactCard:
        return await self._card_of(uow, await self._visible(uow, actor, contact_id), None, latest)

    async def _card_of(
        self,
        uow: UnitOfWork,
        contact: Contact,
        stages: dict[int | None, Stage] | None,
        latest: int = 5,
    ) -> ContactCard:
        details = (await with_names(uow, [contact], stages))[0]
        timeline = await _timeline(uow, _id(contact), None)
        tasks = [
            e.activity for e in timeline if e.activity and e.activity.kind is ActivityKind.TASK
        ]
        shown = timeline[:latest]
        people = await uow.users.get_many({e.by_user_id for e in shown if e.by_user_id})
        return ContactCard(details, _pending(tasks), shown, len(timeline), people)

    async def existing(
        self, actor: User, *, phone: str | None = None, email: str | None = None
    ) -> tuple[ContactDetails | None, bool]:
        """The contact that already has this phone or email (normalized here), and whether the
        actor may open it. Raises InvalidInput for text that is neither."""
        phone = normalize_phone(phone, self._region) if phone else None
        email = normalize_email(email) if email else None
        async with self._uow(read_only=True) as uow:
            found = await uow.contacts.find_by_identifiers(
                phone=phone, email=email, external_id=None
            )
            if not found:
                return None, False
            visible = await _may_touch(uow, actor, found[0])
            return (await with_names(uow, found[:1]))[0], visible

    async def people_named_in(
        self, card: ContactCard, more: Sequence[TimelineEntry] = ()
    ) -> dict[int, User]:
        """The people who wrote or moved what a card shows, and `more`, by id."""
        ids = {e.by_user_id for e in more if e.by_user_id is not None} - card.people.keys()
        if not ids:
            return card.people
        async with self._uow(read_only=True) as uow:
            return {**card.people, **await uow.users.get_many(ids)}

    async def open_tasks(self, actor: User, contact_id: int) -> list[Activity]:
        async with self._uow(read_only=True) as uow:
            await self._visible(uow, actor, contact_id)
            return _pending(await uow.activities.for_contact(contact_id, [ActivityKind.TASK]))

    async def open_leads(self, actor: User, *, limit: int = 200) -> list[ContactDetails]:
        """The actor's own leads in open stages, in stage order then newest first."""
        async with self._uow(read_only=True) as uow:
            pipeline = Pipeline(await uow.stages.list())
            open_ids = [s.id for s in pipeline.in_category(Category.OPEN) if s.id is not None]
            found = await uow.contacts.listing(
                ContactFilter(owner_id=actor.id, stage_ids=tuple(open_ids)),
                Scope.of(actor),
                limit=limit,
            )
            details = await with_names(uow, found)
        order = {stage_id: n for n, stage_id in enumerate(open_ids)}
        return sorted(details, key=lambda d: order.get(d.contact.stage_id or 0, 0))

    async def idle_leads(self, actor: User, days: int, *, limit: int = 50) -> list[ContactDetails]:
        """Leads in open stages, in the actor's scope, untouched (no activity, no stage change)
        for `days` days; the longest idle first."""
        if not 1 <= days <= 3650:
            raise InvalidInput("Give a number of days from 1 to 3650.")
        cutoff = self._clock() - timedelta(days=days)
        async with self._uow(read_only=True) as uow:
            pipeline = Pipeline(await uow.stages.list())
            open_ids = tuple(s.id for s in pipeline.in_category(Category.OPEN) if s.id)
            found = await uow.contacts.listing(
                ContactFilter(stage_ids=open_ids, idle_since=cutoff),
                Scope.of(actor),
                limit=limit,
            )
            return await with_names(uow, found)

    async def company(self, actor: User, company_id: int) -> CompanyCard:
        """A company with its contacts the actor may see, their stages and owners."""
        async with self._uow(read_only=True) as uow:
            company = await uow.companies.get(company_id)
            if company is None:
                raise NotFound("That company no longer exists.")
            found = await uow.contacts.listing(
                ContactFilter(company_id=company_id), Scope.of(actor), limit=100
            )
            return CompanyCard(company, await with_names(uow, found))

    async def reassign(
        self, actor: User, contact_id: int, owner_id: int, *, expected_version: int | None = None
    ) -> Contact:
        """Give a contact to another owner: managers within their team, admins to anyone."""
        if actor.role is Role.AGENT:
            raise AccessDenied("Only a manager or an admin can give a contact to someone else.")
        async with self._uow() as uow:
            contact = await self._visible(uow, actor, contact_id)
            if expected_version is not None and contact.version != expected_version:
                raise await _stale(uow, actor, contact.updated_by_id)
            owner = await uow.users.get(owner_id)
            if owner is None or not owner.active:
                raise UserNotFound(f"#{owner_id}")
            if not Scope.of(actor).covers(owner):
                raise AccessDenied("A manager can give contacts only to people of their team.")
            if contact.owner_id == owner_id:
                return contact
            version = contact.version
            contact.owner_id = owner_id
            contact.version += 1
            contact.updated_by_id = actor.id
            if not await uow.contacts.update(contact, expected_version=version, changed=_OWNER):
                raise StaleVersion(None)
            await uow.commit()
        return contact

    async def set_tags(
        self, actor: User, contact_id: int, tags: Sequence[str], *, expected_version: int
    ) -> Contact:
        """Replace a contact's tags (an empty list clears them)."""
        cleaned = _clean_tags(list(tags))
        if any(len(tag) > TAG_MAX for tag in cleaned) or len(cleaned) > TAGS_MAX:
            raise InvalidInput(f"Up to {TAGS_MAX} tags of at most {TAG_MAX} characters each.")

        def change(contact: Contact, _: list[CustomFieldDef]) -> None:
            contact.tags = cleaned

        return await self._edit(actor, contact_id, expected_version, change)

    async def set_field(
        self, actor: User, contact_id: int, name: str, raw: str, *, expected_version: int
    ) -> Contact:
        """Set (or with an empty value clear) a defined custom field, in its canonical spelling;
        a value the field's kind refuses raises InvalidFieldValue and changes nothing."""

        def change(contact: Contact, defined: list[CustomFieldDef]) -> None:
            field = fields.find(defined, name)
            if field is None:
                raise NotFound(f"There is no field called {name!r}.")
            value = fields.canonical(field, raw)
            if value:
                contact.custom_fields[field.key] = value
            else:
                contact.custom_fields.pop(field.key, None)

        return await self._edit(actor, contact_id, expected_version, change)

    async def _edit(
        self,
        actor: User,
        contact_id: int,
        expected_version: int,
        change: Callable[[Contact, list[CustomFieldDef]], None],
    ) -> Contact:
        """Apply `change` to a contact the actor may touch, if nobody changed it since they saw
        version `expected_version`; an edit that changes nothing writes nothing."""
        async with self._uow() as uow:
            contact = await self._visible(uow, actor, contact_id)
            if contact.version != expected_version:
                raise await _stale(uow, actor, contact.updated_by_id)
            before = {"tags": list(contact.tags), "custom_fields": dict(contact.custom_fields)}
            change(contact, await uow.fields.list())
            changed = frozenset(k for k, was in before.items() if getattr(contact, k) != was)
            if not changed:
                return contact
            contact.version += 1
            contact.updated_by_id = actor.id
            if not await uow.contacts.update(
                contact, expected_version=expected_version, changed=changed
            ):
                raise StaleVersion(None)
            await uow.commit()
        return contact

    async def owners_for(self, actor: User) -> list[User]:
        """Whom the actor may give contacts to: the team for a manager, everyone for an admin."""
        async with self._uow(read_only=True) as uow:
            people = await uow.users.list()
        scope = Scope.of(actor)
        return [u for u in people if u.active and u.role is not Role.ADMIN and scope.covers(u)]

    async def stage_by_name(self, name: str) -> Stage:
        async with self._uow(read_only=True) as uow:
            return await self._stage_named(uow, name)

    async def history(self, actor: User, contact_id: int) -> list[StageChange]:
        async with self._uow(read_only=True) as uow:
            await self._visible(uow, actor, contact_id)
            return await uow.history.for_contact(contact_id)

    async def log_activity(
        self,
        actor: User,
        contact_id: int,
        kind: ActivityKind,
        text: str,
        *,
        due_at: datetime | None = None,
    ) -> Activity:
        async with self._uow() as uow:
            contact = await self._visible(uow, actor, contact_id)
            activity = await self._log(uow, actor, contact, kind, text, due_at)
            await uow.commit()
        return activity

    async def log_from_card(
        self,
        actor: User,
        contact_id: int,
        kind: ActivityKind,
        text: str,
        *,
        due_at: datetime | None = None,
    ) -> ContactCard:
        """An activity logged from a card, and the card after it: one unit of work."""
        async with self._uow() as uow:
            contact = await self._visible(uow, actor, contact_id)
            await self._log(uow, actor, contact, kind, text, due_at)
            card = await self._card_of(uow, contact, None)
            if await uow.commit():
                return card
        return await self.card(actor, contact_id)  # the note shown once, as it was stored

    async def _log(
        self,
        uow: UnitOfWork,
        actor: User,
        contact: Contact,
        kind: ActivityKind,
        text: str,
        due_at: datetime | None,
    ) -> Activity:
        text = text.strip()
        if not text:
            raise InvalidInput("Write something to log.")
        if len(text) > TEXT_MAX:
            raise InvalidInput(f"A note has at most {TEXT_MAX} characters.")
        if kind is ActivityKind.TASK and due_at is None:
            raise InvalidInput("A task needs a due date.")
        now = self._clock()
        activity = await uow.activities.add(
            Activity(None, _id(contact), kind, text, at=now, by_user_id=actor.id, due_at=due_at)
        )
        # The version stays: a note changes nothing a button was drawn from, so the stage
        # buttons of a card shown before it still work.
        contact.last_activity_at = now
        contact.updated_by_id = actor.id
        if not await uow.contacts.update(
            contact, expected_version=contact.version, changed=_ACTIVE
        ):
            raise StaleVersion(None)
        return activity

    async def timeline(
        self, actor: User, contact_id: int, kinds: Sequence[str] | None = None
    ) -> list[TimelineEntry]:
        """Activities and stage changes, newest first; `kinds` filters (activity kinds, "stage")."""
        async with self._uow(read_only=True) as uow:
            await self._visible(uow, actor, contact_id)
            return await _timeline(uow, contact_id, kinds)

    @staticmethod
    async def _refuse_duplicates(uow: UnitOfWork, contact: Contact) -> None:
        existing = await uow.contacts.find_by_identifiers(
            phone=contact.phone, email=contact.email, external_id=contact.external_id
        )
        duplicate = DuplicateContact.among(contact, existing)
        if duplicate is not None:
            raise duplicate

    async def _owner_id(self, uow: UnitOfWork, actor: User, ref: str | None) -> int | None:
        if ref is None:
            return actor.id
        if actor.role is Role.AGENT:
            raise AccessDenied("Only a manager or an admin can give a contact to someone else.")
        owner = await user_by_ref(uow, ref)
        if actor.role is Role.MANAGER and not Scope.of(actor).covers(owner):
            raise AccessDenied("A manager can give contacts only to people of their team.")
        return owner.id

    @staticmethod
    async def _stage_named(uow: UnitOfWork, name: str) -> Stage:
        return Pipeline(await uow.stages.list()).find(name)

    @staticmethod
    async def _visible(uow: UnitOfWork, actor: User, contact_id: int) -> Contact:
        contact = await uow.contacts.get(contact_id)
        if contact is None:
            raise ContactNotFound(f"#{contact_id}")
        if not await _may_touch(uow, actor, contact):
            raise AccessDenied()
        return contact

    @staticmethod
    async def _change_time(
        uow: UnitOfWork, contact: Contact, at: datetime | None, now: datetime
    ) -> datetime:
        if at is None:
            return now
        if at > now + CLOCK_SKEW:
            raise InvalidInput("A stage change cannot be dated in the future.")
        latest = await uow.history.latest(_id(contact))
        if latest is not None and at < latest.at:
            raise InvalidInput(
                "A backdated stage change cannot come before the contact's latest one "
                f"({latest.at:%Y-%m-%d %H:%M})."
            )
        return at


def new_contact(draft: ContactDraft, *, region: str, now: datetime) -> Contact:
    """A contact from a draft, normalized and checked; not stored yet."""
    name = clean_name(draft.name) if draft.name else None
    if name and len(name) > NAME_MAX:
        raise InvalidInput(f"A name has at most {NAME_MAX} characters.")
    phone = normalize_phone(draft.phone, region) if draft.phone else None
    email = normalize_email(draft.email) if draft.email else None
    external_id = draft.external_id.strip() if draft.external_id else None
    if not (name or phone or email or external_id or (draft.company or "").strip()):
        raise InvalidInput(
            "A contact needs a name, a phone, an email, an external id or a company."
        )
    created_at = draft.created_at or now
    if created_at > now + CLOCK_SKEW:
        raise InvalidInput("A contact cannot be created in the future.")
    return Contact(
        id=None,
        name=name,
        phone=phone,
        email=email,
        external_id=external_id or None,
        source=clean_name(draft.source) if draft.source else None,
        value=_parse_value(draft.value),
        tags=_clean_tags(draft.tags),
        custom_fields=_clean_fields(draft.custom_fields),
        created_at=created_at,
        last_activity_at=created_at,
    )


async def _timeline(
    uow: UnitOfWork, contact_id: int, kinds: Sequence[str] | None
) -> list[TimelineEntry]:
    wanted = set(kinds) if kinds else None
    entries: list[TimelineEntry] = []
    if wanted is None or "stage" in wanted:
        stages = {s.id: s.name for s in await uow.stages.list(include_archived=True)}
        for change in await uow.history.for_contact(contact_id):
            before = stages.get(change.from_stage_id, "—") if change.from_stage_id else "—"
            after = stages.get(change.to_stage_id, "—") if change.to_stage_id else "—"
            entries.append(
                TimelineEntry(
                    change.at,
                    "stage",
                    f"{before} → {after}",
                    change.by_user_id,
                    stage_change=change,
                )
            )
    if wanted is None or "event" in wanted:
        # An event that moved the contact is on the timeline as its stage change already.
        for event in await uow.events.for_contact(contact_id, limit=TIMELINE_EVENTS):
            if event.outcome is not Outcome.MOVED:
                entries.append(
                    TimelineEntry(event.received_at, "event", event.kind, None, event=event)
                )
    activity_kinds = [ActivityKind(k) for k in wanted - {"stage", "event"}] if wanted else None
    if activity_kinds is None or activity_kinds:
        for activity in await uow.activities.for_contact(contact_id, activity_kinds):
            entries.append(
                TimelineEntry(
                    activity.at,
                    activity.kind.value,
                    activity.text,
                    activity.by_user_id,
                    activity=activity,
                )
            )
    entries.sort(key=_newest_first)
    return entries


def _is_creation(change: StageChange, contact: Contact) -> bool:
    """The stage a contact was created in (its first history row), which no undo takes back."""
    return change.from_stage_id is None and change.at == contact.created_at


def _pending(tasks: Sequence[Activity]) -> list[Activity]:
    """Tasks not done yet, the soonest due first."""
    return sorted((t for t in tasks if t.done_at is None), key=lambda t: t.due_at or t.at)


async def _may_touch(uow: UnitOfWork, actor: User, contact: Contact) -> bool:
    scope = Scope.of(actor)
    if scope.everything:
        return True
    owner = await uow.users.get(contact.owner_id) if contact.owner_id else None
    return scope.covers(owner)


async def with_names(
    uow: UnitOfWork, contacts: list[Contact], stages: dict[int | None, Stage] | None = None
) -> list[ContactDetails]:
    stages = stages if stages is not None else await _stages_by_id(uow)
    owners = await uow.users.get_many({c.owner_id for c in contacts if c.owner_id})
    companies = await uow.companies.names({c.company_id for c in contacts if c.company_id})
    return [
        ContactDetails(
            c,
            stages.get(c.stage_id) if c.stage_id else None,
            companies.get(c.company_id) if c.company_id else None,
            owners.get(c.owner_id) if c.owner_id else None,
        )
        for c in contacts
    ]


async def _stages_by_id(uow: UnitOfWork) -> dict[int | None, Stage]:
    """Every stage, deleted ones too (a contact's history may name them)."""
    return {s.id: s for s in await uow.stages.list(include_archived=True)}


async def user_by_ref(uow: UnitOfWork, ref: str) -> User:
    """A person by Telegram id or by name (ignoring case and accents)."""
    text = ref.strip()
    if text.lstrip("-").isdigit():
        user = await uow.users.by_telegram_id(int(text))
        if user is not None:
            return user
    matches = await uow.users.by_name(text)
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InvalidInput(f"Several people are called {text!r}; use their Telegram id.")
    raise UserNotFound(text)


async def _stale(uow: UnitOfWork, actor: User, changed_by_id: int | None) -> StaleVersion:
    """The refusal of a change to a contact that changed since it was read."""
    if changed_by_id is not None and changed_by_id == actor.id:
        return StaleVersion(None, by_actor=True)
    return StaleVersion(await _name_of(uow, changed_by_id))


async def _name_of(uow: UnitOfWork, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    user = await uow.users.get(user_id)
    return user.name if user else None


def _newest_first(entry: TimelineEntry) -> tuple[float, int]:
    row = entry.activity or entry.stage_change or entry.event
    return (-entry.at.timestamp(), -(row.id or 0) if row else 0)


def _parse_value(raw: str | None) -> Decimal | None:
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip().replace(" ", "").replace(",", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"{raw!r} is not an amount.") from None
    if not value.is_finite() or value < 0:
        raise InvalidInput(f"{raw!r} is not an amount.")
    return value


def _clean_fields(fields: dict[str, str]) -> dict[str, str]:
    cleaned = {}
    for key, value in fields.items():
        name = clean_name(key)
        if not name or len(name) > 64:
            raise InvalidInput("A custom field needs a name of 1 to 64 characters.")
        text = str(value).strip()
        if len(text) > TEXT_MAX:
            raise InvalidInput(f"{name!r} has more than {TEXT_MAX} characters.")
        if text:
            cleaned[name] = text
    return cleaned


def _clean_tags(tags: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for tag in tags:
        tag = clean_name(tag)
        if tag and tag.casefold() not in seen:
            seen[tag.casefold()] = tag
    return list(seen.values())


def _id(contact: Contact) -> int:
    assert contact.id is not None, "stored contacts have ids"
    return contact.id
