"""Refusals the domain gives. Each message says what happened and, where it can, what to do
instead."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from domain.model import Contact


class DomainError(Exception):
    """A refused operation; nothing was changed."""

    code = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    code = "not_found"


class StageNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"There is no stage called {name!r}.")
        self.name = name


class ContactNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No contact matches {ref!r}.")
        self.ref = ref


class UserNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"No user matches {ref!r}.")
        self.ref = ref


class InvalidInput(DomainError):
    code = "invalid"


class TelegramIdTaken(InvalidInput):
    def __init__(self, telegram_id: int) -> None:
        super().__init__(f"Telegram id {telegram_id} already belongs to someone.")


class DuplicateStageName(DomainError):
    code = "duplicate"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"A stage called {name!r} already exists "
            "(names are compared ignoring case and accents)."
        )


class SelectionChanged(DomainError):
    """A bulk operation confirmed for a number of contacts that its selection no longer holds."""

    code = "selection_changed"

    def __init__(self, confirmed: int, now: int) -> None:
        super().__init__(
            f"{now} contact(s) match now, not the {confirmed} confirmed; nothing was moved. "
            "Ask again to see the new selection."
        )


class LastWonStage(DomainError):
    code = "last_won_stage"


class StageNotEmpty(DomainError):
    code = "stage_not_empty"


class LostReasonRequired(DomainError):
    code = "lost_reason_required"


class ReopenNotAllowed(DomainError):
    code = "reopen_not_allowed"


class ReasonRequired(DomainError):
    code = "reason_required"


class BackwardMoveNotAllowed(DomainError):
    code = "forward_only"


class AutomationDeclined(DomainError):
    code = "automation_declined"


class StaleVersion(DomainError):
    code = "stale_version"

    def __init__(self, changed_by: str | None, *, by_actor: bool = False) -> None:
        who = "You" if by_actor else changed_by or "someone else"
        super().__init__(
            f"{who} changed this contact meanwhile; look at the fresh card and try again."
        )
        self.changed_by = changed_by
        self.by_actor = by_actor  # from another message or button of theirs


class NothingToUndo(DomainError):
    """The stage change an undo button names is no longer the contact's latest one of the
    person's own, or is too old."""

    code = "nothing_to_undo"

    def __init__(
        self, message: str = "There is nothing to undo: the lead changed since, or it is too late."
    ) -> None:
        super().__init__(message)


class AccessDenied(DomainError):
    code = "access_denied"

    def __init__(self, message: str = "You may not touch this contact.") -> None:
        super().__init__(message)


class DuplicateContact(DomainError):
    """Raised when a new contact's phone, email or external id already belongs to one."""

    code = "duplicate_contact"

    def __init__(self, existing_id: int, field: str, value: str) -> None:
        super().__init__(f"Contact #{existing_id} already has {field} {value}.")
        self.existing_id = existing_id
        self.field = field
        self.value = value

    @classmethod
    def among(cls, contact: Contact, others: Sequence[Contact]) -> DuplicateContact | None:
        """The refusal for a contact whose phone, email or external id one of `others` has."""
        for other in others:
            for field_name in ("phone", "email", "external_id"):
                value = getattr(contact, field_name)
                if value is not None and getattr(other, field_name) == value:
                    assert other.id is not None
                    return cls(other.id, field_name.replace("_", " "), value)
        return None


class ImportRefused(InvalidInput):
    """A file that cannot be imported at all (binary, wrong delimiter, no identifier column…);
    nothing of it is applied."""

    code = "import_refused"


class MissingIdentifier(ImportRefused):
    """No column of the file is a phone, an email or an external id; `columns` are the ones a
    mapping could make one."""

    def __init__(self, message: str, columns: list[str]) -> None:
        super().__init__(message)
        self.columns = columns


class InvalidEvent(InvalidInput):
    """An event the HTTP API cannot take; `field` names the part of it at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class IdempotencyKeyReused(InvalidEvent):
    """An idempotency key already used for a different event: replaying it would lose one."""

    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            "idempotency_key",
            "this key was already used for a different event; use a new key for a new event",
        )


class EventConflict(DomainError):
    """Concurrent events (other workers') kept changing the same contacts or keys."""

    code = "conflict"

    def __init__(self) -> None:
        super().__init__("Other events changed this contact meanwhile; send the event again.")
