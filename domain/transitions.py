"""The transition rules (DESIGN §1 "Transitions"), one function applied on every path:
chat, command line, import, bulk moves, reassignment and automation."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import (
    AutomationDeclined,
    BackwardMoveNotAllowed,
    InvalidInput,
    LostReasonRequired,
    ReasonRequired,
    ReopenNotAllowed,
)
from domain.model import Category, Role, Source, Stage
from domain.text import fold

DEFAULT_LOST_REASONS = ("Price", "Competitor", "No budget", "No response", "Not a fit", "Other")
# The listed reason that stands for "describe it yourself", in the languages we speak.
OTHER_REASONS = frozenset({"other", "khac", "其他"})


def is_other(reason: str) -> bool:
    return fold(reason) in OTHER_REASONS


REASON_MAX = 500


@dataclass(frozen=True, slots=True)
class Policy:
    """Organisation settings the rules depend on."""

    forward_only: bool = False
    lost_reasons: tuple[str, ...] = DEFAULT_LOST_REASONS


@dataclass(frozen=True, slots=True)
class Move:
    """An allowed stage change, with the reason to record (None when none is needed)."""

    to_stage: Stage | None
    reason: str | None


def is_forward(current: Stage | None, target: Stage | None) -> bool:
    """Forward means later in the funnel: any stage from none, a later open stage, any closed
    stage from an open one, or a later stage within the same closed category."""
    if target is None:
        return False
    if current is None:
        return True
    if current.category is Category.OPEN:
        return target.category.closed or target.position > current.position
    return target.category is current.category and target.position > current.position


def leaves_closed(current: Stage | None, target: Stage | None) -> bool:
    """Moving a won or lost contact out of its category: reopening it, or changing the outcome."""
    if current is None or not current.category.closed:
        return False
    return target is None or target.category is not current.category


def plan_move(
    current: Stage | None,
    target: Stage | None,
    *,
    role: Role,
    source: Source,
    reason: str | None,
    policy: Policy,
) -> Move | None:
    """Decide a stage change. None means "already there" (a no-op, no history row); a refusal
    raises a DomainError that says why and what to do instead."""
    if (current.id if current else None) == (target.id if target else None):
        return None
    if target is not None and target.archived:
        raise InvalidInput(f"Stage {target.name!r} was deleted; choose another stage.")
    reason = _clean_reason(reason)
    if source is Source.UNDO:
        return Move(target, reason)

    if source is Source.AUTOMATION:
        if leaves_closed(current, target):
            assert current is not None
            raise AutomationDeclined(
                f"The contact is {current.category.value} ({current.name}); automation never "
                "moves a won or lost contact to another category."
            )
        if not is_forward(current, target):
            raise AutomationDeclined("Automation only moves contacts forward.")

    if leaves_closed(current, target):
        assert current is not None
        if role not in (Role.MANAGER, Role.ADMIN):
            raise ReopenNotAllowed(
                f"The contact is {current.category.value}; "
                "only a manager or an admin can reopen it."
            )
        if reason is None:
            raise ReasonRequired("Reopening a won or lost contact needs a reason.")

    if target is not None and target.category is Category.LOST:
        reason = check_lost_reason(reason, policy)

    if (
        policy.forward_only
        and role is Role.AGENT
        and current is not None
        and target is not None
        and current.category is Category.OPEN
        and target.category is Category.OPEN
        and target.position < current.position
    ):
        raise BackwardMoveNotAllowed(
            f"Leads only move forward here; {target.name!r} comes before {current.name!r}."
        )
    return Move(target, reason)


def check_lost_reason(reason: str | None, policy: Policy) -> str:
    """A lost reason is required; a reason from the configured list is stored in its listed
    spelling, "Other" alone is refused (it needs a description), and any other text counts as
    a described "Other"."""
    reason = _clean_reason(reason)
    if reason is None:
        listed = ", ".join(policy.lost_reasons)
        raise LostReasonRequired(f"Moving a contact to a lost stage needs a reason ({listed}).")
    for listed_reason in policy.lost_reasons:
        if fold(listed_reason) == fold(reason):
            if is_other(listed_reason):
                raise LostReasonRequired("Describe the reason when you choose Other.")
            return listed_reason
    return reason


def _clean_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    reason = " ".join(reason.split())
    if len(reason) > REASON_MAX:
        raise InvalidInput(f"A reason has at most {REASON_MAX} characters.")
    return reason or None
