"""Entities of the lifecycle domain. Plain dataclasses: storage maps them, services change them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from decimal import Decimal
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


class Category(enum.StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"

    @property
    def closed(self) -> bool:
        return self is not Category.OPEN


# Display order of categories: open stages by position, then won, then lost.
CATEGORY_ORDER = {Category.OPEN: 0, Category.WON: 1, Category.LOST: 2}


class Role(enum.StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    AGENT = "agent"


class Source(enum.StrEnum):
    """Where a stage change came from; every history row names one."""

    MANUAL = "manual"
    BULK = "bulk"
    IMPORT = "import"
    AUTOMATION = "automation"
    REASSIGN = "reassign"
    UNDO = "undo"


class ActivityKind(enum.StrEnum):
    NOTE = "note"
    CALL = "call"
    EMAIL = "email"
    MEETING = "meeting"
    TASK = "task"


class EventKind(enum.StrEnum):
    """What a web form, a landing page, an email tool or accounting reports about a contact."""

    FORM_SUBMITTED = "form_submitted"
    PAGE_VIEWED = "page_viewed"
    CTA_CLICKED = "cta_clicked"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    OPPORTUNITY_POOL = "opportunity_pool"
    OPPORTUNITY_CREATED = "opportunity_created"
    REVENUE_BOOKED = "revenue_booked"
    UNSUBSCRIBED = "unsubscribed"
    DISQUALIFIED = "disqualified"


class Outcome(enum.StrEnum):
    """What automation did with an event."""

    MOVED = "moved"
    UNCHANGED = "unchanged"  # the contact already was in the rule's stage
    DECLINED = "declined"  # the rule's move breaks a transition rule; `detail` says which
    NO_RULE = "no_rule"


class FieldKind(enum.StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"
    CHOICE = "choice"


@dataclass(slots=True)
class Stage:
    id: int | None
    name: str
    category: Category
    position: int
    archived_at: datetime | None = None
    idle_days: int | None = None  # a lead sitting here longer is idle; None: the default

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def sort_key(self) -> tuple[int, int, int]:
        return (CATEGORY_ORDER[self.category], self.position, self.id or 0)


@dataclass(slots=True)
class User:
    """A person of the organisation. May exist before ever opening Telegram (telegram_id unset)."""

    id: int | None
    name: str
    role: Role
    telegram_id: int | None = None
    team: str | None = None
    active: bool = True
    language: str | None = None
    created_at: datetime = field(default_factory=utcnow)

    @property
    def can_reopen(self) -> bool:
        return self.role in (Role.ADMIN, Role.MANAGER)


class RequestStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(slots=True)
class AccessRequest:
    """Someone who started the bot without being known asks an admin to let them in."""

    id: int | None
    telegram_id: int
    name: str
    username: str | None = None
    language: str | None = None
    requested_at: datetime = field(default_factory=utcnow)
    status: RequestStatus = RequestStatus.PENDING
    decided_by_id: int | None = None
    decided_at: datetime | None = None


@dataclass(slots=True)
class Company:
    id: int | None
    name: str


@dataclass(slots=True)
class Contact:
    id: int | None
    name: str | None
    phone: str | None = None
    email: str | None = None
    external_id: str | None = None
    company_id: int | None = None
    source: str | None = None
    owner_id: int | None = None
    stage_id: int | None = None
    value: Decimal | None = None
    tags: list[str] = field(default_factory=list)
    custom_fields: dict[str, str] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    stage_entered_at: datetime | None = None
    last_activity_at: datetime | None = None
    version: int = 1
    updated_by_id: int | None = None

    def label(self) -> str:
        return self.name or self.phone or self.email or self.external_id or f"#{self.id}"


@dataclass(slots=True, frozen=True)
class StageChange:
    """One row of a contact's stage history. Stores stage ids, never categories, so that
    recategorizing a stage corrects every report at once."""

    contact_id: int
    from_stage_id: int | None
    to_stage_id: int | None
    at: datetime
    by_user_id: int | None
    source: Source
    reason: str | None = None
    operation_id: int | None = None
    id: int | None = None


@dataclass(slots=True)
class Activity:
    id: int | None
    contact_id: int
    kind: ActivityKind
    text: str
    at: datetime = field(default_factory=utcnow)
    by_user_id: int | None = None
    due_at: datetime | None = None
    done_at: datetime | None = None
    reminded_at: datetime | None = None


@dataclass(slots=True)
class CustomFieldDef:
    id: int | None
    key: str
    name: str
    kind: FieldKind
    choices: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Operation:
    """A bulk operation (import, bulk move, reassignment) that can be listed and undone."""

    id: int | None
    kind: str
    actor_id: int | None
    description: str
    created_at: datetime = field(default_factory=utcnow)
    undone_at: datetime | None = None
    stage_id: int | None = None  # the stage a deletion archived
    contacts: int = 0
    undone_by_id: int | None = None


@dataclass(slots=True, frozen=True)
class OperationItem:
    """One contact as a bulk operation found it, and its version right after the operation.
    (Contacts an import creates need none: they are marked with the operation.)"""

    operation_id: int
    contact_id: int
    before_stage_id: int | None
    before_stage_entered_at: datetime | None
    before_last_activity_at: datetime | None
    after_version: int
    before_fields: dict[str, Any] | None = None  # profile fields an import changed


@dataclass(slots=True)
class ApiKey:
    """A bearer key of the HTTP API. Only a SHA-256 hash of the secret is kept; `prefix`, the
    secret's first characters, tells keys apart in lists and finds the key to compare."""

    id: int | None
    name: str
    prefix: str
    secret_hash: str
    created_at: datetime = field(default_factory=utcnow)
    created_by_id: int | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(slots=True)
class ReceivedEvent:
    """An event the HTTP API accepted, with what automation made of it. `via` names the API key
    it came with; an idempotency key is unique per `via`, and `fingerprint` tells a replay of the
    same event from another event under a reused key."""

    id: int | None
    kind: EventKind
    contact_id: int
    received_at: datetime
    via: str
    outcome: Outcome
    fingerprint: str
    idempotency_key: str | None = None
    source: str | None = None
    value: Decimal | None = None
    created_contact: bool = False
    from_stage_id: int | None = None
    to_stage_id: int | None = None  # the rule's stage (also when the move was declined)
    detail: str | None = None


@dataclass(slots=True)
class Notice:
    """Someone to tell about a new lead; sent (and marked) after the event's commit."""

    id: int | None
    user_id: int
    contact_id: int
    created_at: datetime = field(default_factory=utcnow)
    sent_at: datetime | None = None


@dataclass(slots=True, frozen=True)
class TimelineEntry:
    """A contact's timeline merges activities and stage changes, newest first."""

    at: datetime
    kind: str  # an ActivityKind value, "stage" or "event"
    text: str
    by_user_id: int | None
    activity: Activity | None = None
    stage_change: StageChange | None = None
    event: ReceivedEvent | None = None


@dataclass(slots=True)
class SavedView:
    """A named filter (see domain.views), its owner's, or shared with everyone."""

    id: int | None
    owner_id: int | None
    name: str
    filter: dict[str, Any]
    shared: bool = False
    created_at: datetime = field(default_factory=utcnow)


class DigestSection(enum.StrEnum):
    """What a morning digest may hold; each person chooses."""

    NEW = "new"
    MOVES = "moves"
    CONVERTED = "converted"
    LOST = "lost"
    IDLE = "idle"
    TOP = "top"
    CHART = "chart"


@dataclass(slots=True)
class DigestSettings:
    """When and what a person receives each morning: managers and admins the digest of their
    scope, agents the list of their idle leads."""

    user_id: int
    enabled: bool = True
    send_at: time = time(8, 0)
    timezone: str = "Asia/Ho_Chi_Minh"
    sections: frozenset[DigestSection] = frozenset(DigestSection)
    # The bot could not reach the person (they blocked it): nothing is sent until they write again.
    blocked_at: datetime | None = None
