"""Row ↔ entity mapping for the repositories: the columns bulk writes give, in order, and
the entities made from rows (and the values written from entities)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from operator import attrgetter
from typing import Any

from domain.model import (
    AccessRequest,
    Activity,
    ActivityKind,
    ApiKey,
    Category,
    Contact,
    EventKind,
    Operation,
    Outcome,
    ReceivedEvent,
    RequestStatus,
    Role,
    SavedView,
    Source,
    Stage,
    StageChange,
    User,
)
from domain.text import fold
from storage import bulk
from storage.models import (
    AccessRequestRow,
    ActivityRow,
    ApiKeyRow,
    ContactRow,
    EventRow,
    OperationRow,
    SavedViewRow,
    StageChangeRow,
    StageRow,
    UserRow,
)

# A contact's columns, in the order bulk writes give them.
CONTACT_FIELDS = (
    "name",
    "phone",
    "email",
    "external_id",
    "company_id",
    "source",
    "owner_id",
    "stage_id",
    "value",
    "custom_fields",
    "created_at",
    "stage_entered_at",
    "last_activity_at",
    "version",
    "updated_by_id",
)
CONTACT_COLUMNS = (*CONTACT_FIELDS, "search_text")
HISTORY_COLUMNS = (
    "contact_id",
    "from_stage_id",
    "to_stage_id",
    "at",
    "by_user_id",
    "source",
    "reason",
    "operation_id",
)
ITEM_COLUMNS = (
    "operation_id",
    "contact_id",
    "before_stage_id",
    "before_stage_entered_at",
    "before_last_activity_at",
    "before_fields",
    "after_version",
)
contact_fields = attrgetter(*CONTACT_FIELDS)


def contact_values(contact: Contact) -> dict[str, Any]:
    return dict(zip(CONTACT_FIELDS, contact_fields(contact), strict=True))


def contact_from_row(row: ContactRow, tags: list[str]) -> Contact:
    return _contact_from((row.id, *contact_fields(row)), tags)


def _contact_from(values: Sequence[Any], tags: list[str]) -> Contact:
    """A contact from its id and its CONTACT_FIELDS, in order."""
    (
        contact_id,
        name,
        phone,
        email,
        external_id,
        company_id,
        source,
        owner_id,
        stage_id,
        value,
        custom_fields,
        created_at,
        stage_entered_at,
        last_activity_at,
        version,
        updated_by_id,
    ) = values
    return Contact(
        id=contact_id,
        name=name,
        phone=phone,
        email=email,
        external_id=external_id,
        company_id=company_id,
        source=source,
        owner_id=owner_id,
        stage_id=stage_id,
        value=value,
        tags=tags,
        custom_fields=dict(custom_fields or {}),
        created_at=created_at,
        stage_entered_at=stage_entered_at,
        last_activity_at=last_activity_at,
        version=version,
        updated_by_id=updated_by_id,
    )


def contacts_from_raw(
    rows: Collection[Sequence[Any]], converters: Sequence[bulk.Converter | None]
) -> list[Contact]:
    """Contacts (without their tags) from rows of their id and CONTACT_FIELDS, in order, as the
    driver gives them, each value converted by its column's converter (bulk.select_raw)."""
    same = _same
    value_of, fields_of, created_of, entered_of, activity_of = (
        converters[1 + CONTACT_FIELDS.index(name)] or same
        for name in ("value", "custom_fields", "created_at", "stage_entered_at", "last_activity_at")
    )
    assert not any(
        converters[1 + i] for i, name in enumerate(CONTACT_FIELDS) if name not in _CONVERTED
    ), "a contact column needs converting that contacts_from_raw passes on as it is"
    return [
        Contact(
            contact_id,
            name,
            phone,
            email,
            external_id,
            company_id,
            source,
            owner_id,
            stage_id,
            value_of(value),
            [],
            dict(fields_of(custom_fields) or ()),  # the converted dicts are shared
            created_of(created_at),
            entered_of(stage_entered_at),
            activity_of(last_activity_at),
            version,
            updated_by_id,
        )
        for (
            contact_id,
            name,
            phone,
            email,
            external_id,
            company_id,
            source,
            owner_id,
            stage_id,
            value,
            custom_fields,
            created_at,
            stage_entered_at,
            last_activity_at,
            version,
            updated_by_id,
        ) in rows
    ]


_CONVERTED = frozenset(
    ("value", "custom_fields", "created_at", "stage_entered_at", "last_activity_at")
)


def _same(value: Any) -> Any:
    return value


def stage_values(stage: Stage) -> dict[str, Any]:
    return {
        "name": stage.name,
        "name_key": fold(stage.name),
        "category": stage.category.value,
        "position": stage.position,
        "archived_at": stage.archived_at,
        "idle_days": stage.idle_days,
    }


def stage_from_row(row: StageRow) -> Stage:
    return Stage(
        row.id, row.name, Category(row.category), row.position, row.archived_at, row.idle_days
    )


def change_values(change: StageChange) -> dict[str, Any]:
    return {
        "contact_id": change.contact_id,
        "from_stage_id": change.from_stage_id,
        "to_stage_id": change.to_stage_id,
        "at": change.at,
        "by_user_id": change.by_user_id,
        "source": change.source.value,
        "reason": change.reason,
        "operation_id": change.operation_id,
    }


def change_from_row(row: StageChangeRow) -> StageChange:
    return StageChange(
        contact_id=row.contact_id,
        from_stage_id=row.from_stage_id,
        to_stage_id=row.to_stage_id,
        at=row.at,
        by_user_id=row.by_user_id,
        source=Source(row.source),
        reason=row.reason,
        operation_id=row.operation_id,
        id=row.id,
    )


def user_values(user: User) -> dict[str, Any]:
    return {
        "telegram_id": user.telegram_id,
        "name": user.name,
        "name_key": fold(user.name),
        "role": user.role.value,
        "team": user.team,
        "active": user.active,
        "language": user.language,
    }


def user_from_row(row: UserRow) -> User:
    return User(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        telegram_id=row.telegram_id,
        team=row.team,
        active=row.active,
        language=row.language,
        created_at=row.created_at,
    )


def activity_from_row(row: ActivityRow) -> Activity:
    return Activity(
        row.id,
        row.contact_id,
        ActivityKind(row.kind),
        row.text,
        at=row.at,
        by_user_id=row.by_user_id,
        due_at=row.due_at,
        done_at=row.done_at,
        reminded_at=row.reminded_at,
    )


def operation_values(operation: Operation) -> dict[str, Any]:
    return {
        "kind": operation.kind,
        "actor_id": operation.actor_id,
        "description": operation.description,
        "created_at": operation.created_at,
        "undone_at": operation.undone_at,
        "stage_id": operation.stage_id,
        "contacts": operation.contacts,
        "undone_by_id": operation.undone_by_id,
    }


def operation_from_row(row: OperationRow) -> Operation:
    return Operation(
        row.id,
        row.kind,
        row.actor_id,
        row.description,
        row.created_at,
        row.undone_at,
        stage_id=row.stage_id,
        contacts=row.contacts,
        undone_by_id=row.undone_by_id,
    )


def view_from_row(row: SavedViewRow) -> SavedView:
    return SavedView(row.id, row.owner_id, row.name, dict(row.filter), row.shared, row.created_at)


def request_values(request: AccessRequest) -> dict[str, Any]:
    return {
        "telegram_id": request.telegram_id,
        "name": request.name,
        "username": request.username,
        "language": request.language,
        "requested_at": request.requested_at,
        "status": request.status.value,
        "decided_by_id": request.decided_by_id,
        "decided_at": request.decided_at,
    }


def request_from_row(row: AccessRequestRow) -> AccessRequest:
    return AccessRequest(
        row.id,
        row.telegram_id,
        row.name,
        username=row.username,
        language=row.language,
        requested_at=row.requested_at,
        status=RequestStatus(row.status),
        decided_by_id=row.decided_by_id,
        decided_at=row.decided_at,
    )


def api_key_from_row(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        row.id,
        row.name,
        row.prefix,
        row.secret_hash,
        created_at=row.created_at,
        created_by_id=row.created_by_id,
        revoked_at=row.revoked_at,
    )


EVENT_COLUMNS = (
    "kind",
    "contact_id",
    "received_at",
    "via",
    "idempotency_key",
    "fingerprint",
    "source",
    "value",
    "outcome",
    "created_contact",
    "from_stage_id",
    "to_stage_id",
    "detail",
)
# Columns that tell the events of one batch apart (the rest follows from them), read back as
# plain values by every driver.
EVENT_IDENTITY = (
    "contact_id",
    "kind",
    "via",
    "idempotency_key",
    "fingerprint",
    "outcome",
    "from_stage_id",
    "to_stage_id",
)


def identity_of(event: ReceivedEvent) -> tuple[Any, ...]:
    return (
        event.contact_id,
        event.kind.value,
        event.via,
        event.idempotency_key,
        event.fingerprint,
        event.outcome.value,
        event.from_stage_id,
        event.to_stage_id,
    )


def event_from_row(row: EventRow) -> ReceivedEvent:
    return ReceivedEvent(
        row.id,
        EventKind(row.kind),
        row.contact_id,
        row.received_at,
        row.via,
        Outcome(row.outcome),
        row.fingerprint,
        idempotency_key=row.idempotency_key,
        source=row.source,
        value=row.value,
        created_contact=row.created_contact,
        from_stage_id=row.from_stage_id,
        to_stage_id=row.to_stage_id,
        detail=row.detail,
    )
