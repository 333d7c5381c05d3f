"""SQLAlchemy 2 typed models. The Alembic migrations are the source of truth for the schema;
these models describe the same tables for queries."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from storage.db import UTCDateTime


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class StageRow(Base):
    __tablename__ = "stages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(8))
    position: Mapped[int] = mapped_column(Integer)
    archived_at: Mapped[datetime | None]
    idle_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]

    __table_args__ = (
        Index(
            "uq_stages_live_name",
            "name_key",
            unique=True,
            sqlite_where=text("archived_at IS NULL"),
            postgresql_where=text("archived_at IS NULL"),
        ),
    )


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(100))
    name_key: Mapped[str] = mapped_column(String(100), index=True)
    role: Mapped[str] = mapped_column(String(8))
    team: Mapped[str | None] = mapped_column(String(64), index=True)
    active: Mapped[bool] = mapped_column(Boolean)
    language: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime]


class CompanyRow(Base):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200), unique=True)


class ContactRow(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"), index=True)
    source: Mapped[str | None] = mapped_column(String(100))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.id"), index=True)
    value: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    custom_fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(index=True)
    stage_entered_at: Mapped[datetime | None]
    last_activity_at: Mapped[datetime | None] = mapped_column(index=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    search_text: Mapped[str] = mapped_column(Text)
    # The import that created the contact: undoing it removes the contact unless changed since.
    created_by_operation_id: Mapped[int | None] = mapped_column(Integer)


class TagRow(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64), unique=True)


class ContactTagRow(Base):
    __tablename__ = "contact_tags"

    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id"), primary_key=True, index=True)


class OperationRow(Base):
    __tablename__ = "operations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    undone_at: Mapped[datetime | None]
    stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.id"))
    contacts: Mapped[int] = mapped_column(Integer, server_default="0")
    undone_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class OperationItemRow(Base):
    """A contact as it was before a bulk operation changed it, and its version right after, to
    tell whether anyone changed it since. (Contacts an import creates are marked instead:
    ContactRow.created_by_operation_id.)"""

    __tablename__ = "operation_items"

    operation_id: Mapped[int] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    before_stage_id: Mapped[int | None] = mapped_column(Integer)
    before_stage_entered_at: Mapped[datetime | None]
    before_last_activity_at: Mapped[datetime | None]
    before_fields: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    after_version: Mapped[int] = mapped_column(Integer)
    # A bulk move's undo puts the contact's report row back from these, without reading its
    # history (ReportProjection.unmoved); unset for an import's items.
    before_report_path: Mapped[str | None] = mapped_column(Text)
    before_report_touched: Mapped[bool | None] = mapped_column(Boolean)
    before_report_entered_s: Mapped[int | None] = mapped_column(BigInteger)
    before_report_last_at_s: Mapped[int | None] = mapped_column(BigInteger)


class StageChangeRow(Base):
    __tablename__ = "stage_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    from_stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.id"))
    to_stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.id"))
    at: Mapped[datetime]
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    source: Mapped[str] = mapped_column(String(12))
    reason: Mapped[str | None] = mapped_column(Text)
    operation_id: Mapped[int | None] = mapped_column(ForeignKey("operations.id"), index=True)

    __table_args__ = (Index("ix_stage_changes_contact_at", "contact_id", "at", "id"),)


class ActivityRow(Base):
    __tablename__ = "activities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    due_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_activities_contact_at", "contact_id", "at"),
        Index("ix_activities_kind_due_at", "kind", "due_at"),
    )


class AccessRequestRow(Base):
    __tablename__ = "access_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, index=True)
    name: Mapped[str] = mapped_column(String(100))
    username: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(16))
    requested_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(8))
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]


class ProcessedUpdateRow(Base):
    """What a Telegram update did (storage.ledger): how many of its units of work committed."""

    __tablename__ = "processed_updates"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(index=True)
    steps: Mapped[int] = mapped_column(default=0, server_default="0")


class SavedViewRow(Base):
    __tablename__ = "saved_views"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    filter: Mapped[dict[str, Any]] = mapped_column(JSON)
    shared: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime]


class CustomFieldRow(Base):
    __tablename__ = "custom_fields"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    choices: Mapped[list[str]] = mapped_column(JSON)


class DigestSettingsRow(Base):
    __tablename__ = "digest_settings"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    send_at: Mapped[str] = mapped_column(String(5))
    timezone: Mapped[str] = mapped_column(String(64))
    sections: Mapped[list[str]] = mapped_column(JSON)
    blocked_at: Mapped[datetime | None]


class DeliveryRow(Base):
    """A morning message claimed for a person and a day: the primary key makes a second claim
    fail, so nothing is sent twice."""

    __tablename__ = "deliveries"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    claimed_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class LeaseRow(Base):
    """Which process runs the scheduler, until when."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime]


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "uq_api_keys_active_name",
            "name_key",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )


class EventRow(Base):
    """An event the HTTP API took, and what automation made of it."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    received_at: Mapped[datetime]
    via: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(100))
    value: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    outcome: Mapped[str] = mapped_column(String(12))
    created_contact: Mapped[bool] = mapped_column(Boolean)
    from_stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.id"))
    to_stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.id"))
    detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("uq_events_via_idempotency_key", "via", "idempotency_key", unique=True),
        Index("ix_events_contact_kind", "contact_id", "kind"),
    )


class AutomationRuleRow(Base):
    """An admin's choice for a trigger; a trigger without a row follows the default."""

    __tablename__ = "automation_rules"

    trigger: Mapped[str] = mapped_column(String(32), primary_key=True)
    stage_id: Mapped[int | None] = mapped_column(ForeignKey("stages.id"))


class AssignmentTurnRow(Base):
    """Who got the last new lead of a queue (a team, or all agents)."""

    __tablename__ = "assignment_turns"

    queue: Mapped[str] = mapped_column(String(80), primary_key=True)
    last_user_id: Mapped[int | None] = mapped_column(Integer)


class NoticeRow(Base):
    """A new lead to tell someone about in Telegram; sent_at is set once it was sent."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "ix_notices_pending",
            "id",
            sqlite_where=text("sent_at IS NULL"),
            postgresql_where=text("sent_at IS NULL"),
        ),
    )


class ReportContactRow(Base):
    """A contact as the reports read it (docs/reports.md, "How the database keeps up"): copies
    of its owner (0 for none, so that every scope is an `owner_id IN (...)` an index answers),
    source and stage (0 for none), and facts of its history. Times are whole seconds since
    1970, UTC; buckets are `storage.report_rows.bucket` of a length, for exact medians."""

    __tablename__ = "report_contacts"

    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    owner_id: Mapped[int] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(String(100))
    stage_id: Mapped[int] = mapped_column(Integer)  # now (0: no stage)
    created_s: Mapped[int] = mapped_column(BigInteger)
    entered_s: Mapped[int | None] = mapped_column(BigInteger)  # first stage assignment
    path: Mapped[str] = mapped_column(Text)  # stage ids entered, in order of last entry
    touched: Mapped[bool] = mapped_column(Boolean)  # any activity or stage change after creation
    responded_s: Mapped[int | None] = mapped_column(BigInteger)  # first response
    response_bucket: Mapped[int] = mapped_column(Integer)  # of responded - created; -1: none
    # The last history row (in history order), for appending the next one without reading
    # the history: its stage (0: none) and time, and the contact's latest entries into the
    # won and the lost categories (as the stages are categorized now).
    last_stage_id: Mapped[int] = mapped_column(Integer)
    last_at_s: Mapped[int | None] = mapped_column(BigInteger)
    last_won_s: Mapped[int | None] = mapped_column(BigInteger)
    last_lost_s: Mapped[int | None] = mapped_column(BigInteger)

    # Covering indexes, each led by what a report groups by (a few values, listed with IN so
    # that the database seeks each and reads only the period, in order, without sorting).
    # A bulk move rewrites the entries of every index holding a column it sets (stage, path,
    # touched), so those are in as few indexes as the reports allow: the snapshot counts
    # current stages with the path index, and untouched (idle) contacts have a partial index.
    __table_args__ = (
        Index("ix_report_contacts_path", "path", "stage_id", "entered_s", "owner_id"),
        Index("ix_report_contacts_source", "source", "created_s", "owner_id"),
        Index(
            "ix_report_contacts_idle",
            "created_s",
            "owner_id",
            sqlite_where=text("NOT touched"),
            postgresql_where=text("NOT touched"),
        ),
        Index(
            "ix_report_contacts_owner", "owner_id", "response_bucket", "created_s", "responded_s"
        ),
    )


class ReportMoveRow(Base):
    """One history row as the reports read it: when it happened, the stay it ended (the stage
    the contact was in before it, by history order, and for how long), whether it entered the
    won (1) or the lost (2) category from outside it and, if so, when the contact last entered
    that category before; with the contact's owner (0 for none) and creation."""

    __tablename__ = "report_moves"

    change_id: Mapped[int] = mapped_column(
        ForeignKey("stage_changes.id", ondelete="CASCADE"), primary_key=True
    )
    # No key of its own: deleting a contact deletes its history, which deletes these rows.
    contact_id: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[int] = mapped_column(Integer)
    created_s: Mapped[int] = mapped_column(BigInteger)
    at_s: Mapped[int] = mapped_column(BigInteger)
    to_stage_id: Mapped[int] = mapped_column(Integer)  # 0: no stage
    from_stage_id: Mapped[int] = mapped_column(Integer)  # 0: no stage
    creation: Mapped[bool] = mapped_column(Boolean)  # records the contact's creation
    stay_stage_id: Mapped[int] = mapped_column(Integer)  # 0: none (first row, or from none)
    stay_s: Mapped[int | None] = mapped_column(BigInteger)
    stay_bucket: Mapped[int] = mapped_column(Integer)  # -1 when no stay
    entry: Mapped[int] = mapped_column(Integer)  # 0 none, 1 won, 2 lost
    prev_entry_s: Mapped[int | None] = mapped_column(BigInteger)
    age_s: Mapped[int] = mapped_column(BigInteger)  # at_s - created_s
    age_bucket: Mapped[int] = mapped_column(Integer)

    # Entries into won or lost are a fraction of the rows: only they are in the entry indexes
    # (a query reads them with `entry > 0` among its conditions). Every row is in the stay index.
    __table_args__ = (
        Index(
            "ix_report_moves_entry",
            "entry",
            "at_s",
            "prev_entry_s",
            "owner_id",
            sqlite_where=text("entry > 0"),
            postgresql_where=text("entry > 0"),
        ),
        Index(
            "ix_report_moves_owner_entry",
            "entry",
            "owner_id",
            "age_bucket",
            "at_s",
            "prev_entry_s",
            "age_s",
            sqlite_where=text("entry > 0"),
            postgresql_where=text("entry > 0"),
        ),
        # By owner before length: the stays a bulk move ends (all at one moment) are added up
        # per owner in this order (ReportProjection.moved_in_bulk).
        Index(
            "ix_report_moves_stay",
            "stay_stage_id",
            "stay_bucket",
            "at_s",
            "owner_id",
            "stay_s",
            "creation",
        ),
    )


class ReportStayBlockRow(Base):
    """The stays that ended in one block of 32 days (UTC seconds since 1970 // BLOCK), by stage,
    length bucket and the contact's owner: how many and their total length. A year of time in
    stage reads some 500,000 of these instead of 2 million report_moves rows, and the period's
    ragged ends (up to a block on each side) from report_moves. Kept by the same writes as
    report_moves; a row whose stays all went keeps n = 0."""

    __tablename__ = "report_stay_blocks"

    stay_stage_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stay_bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    total_s: Mapped[int] = mapped_column(BigInteger)
