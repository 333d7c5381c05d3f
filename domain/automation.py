"""Automation rules (ISSUE 7): which stage an event moves a contact to. The table has one row per
trigger — each event kind, and a repeated revenue event apart — and each move goes through
`plan_move` with source `automation`, so it only moves forward and never out of won or lost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domain.errors import AutomationDeclined, InvalidInput, NotFound
from domain.model import EventKind, Outcome, Role, Source, Stage
from domain.stages import Pipeline
from domain.transitions import Policy, plan_move

INTERACTIONS = frozenset(
    {
        EventKind.FORM_SUBMITTED,
        EventKind.PAGE_VIEWED,
        EventKind.CTA_CLICKED,
        EventKind.EMAIL_OPENED,
        EventKind.EMAIL_CLICKED,
    }
)
# A revenue event after the first one: MISA AMIS makes such a contact a loyal customer.
REPEAT_REVENUE = "revenue_repeat"
TRIGGERS: tuple[str, ...] = (*(kind.value for kind in EventKind), REPEAT_REVENUE)

# The stage of the `amis` template each trigger moves to until an admin says otherwise.
DEFAULT_STAGES: Mapping[str, str] = {
    **{kind.value: "Lead" for kind in INTERACTIONS},
    EventKind.OPPORTUNITY_POOL.value: "MQL",
    EventKind.OPPORTUNITY_CREATED.value: "SQL",
    EventKind.REVENUE_BOOKED.value: "Customer",
    REPEAT_REVENUE: "Loyal customer",
    EventKind.UNSUBSCRIBED.value: "Unsubscribed",
    EventKind.DISQUALIFIED.value: "Disqualified",
}


def parse_trigger(raw: str) -> str:
    trigger = raw.strip().lower()
    if trigger not in TRIGGERS:
        raise InvalidInput(f"{raw!r} is not a trigger; use one of {', '.join(TRIGGERS)}.")
    return trigger


def trigger_of(kind: EventKind, earlier_revenue_events: int) -> str:
    """The rule an event follows: a revenue event after an earlier one is a repeat."""
    if kind is EventKind.REVENUE_BOOKED and earlier_revenue_events > 0:
        return REPEAT_REVENUE
    return kind.value


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: the stage a trigger moves to (None: it changes no stage), and
    whether that comes from the defaults rather than an admin's choice."""

    trigger: str
    stage: Stage | None
    default: bool


def rule_table(chosen: Mapping[str, int | None], stages: Mapping[int, Stage]) -> list[Rule]:
    """Every trigger's rule. An admin's choice is kept by stage id (so it follows renames); a
    trigger nobody chose follows the live stage named as in the `amis` template, if any."""
    pipeline = Pipeline(stages.values())
    rules = []
    for trigger in TRIGGERS:
        if trigger in chosen:
            stage_id = chosen[trigger]
            rules.append(Rule(trigger, stages.get(stage_id) if stage_id else None, False))
            continue
        try:
            stage: Stage | None = pipeline.find(DEFAULT_STAGES[trigger])
        except NotFound:
            stage = None
        rules.append(Rule(trigger, stage, True))
    return rules


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    reason: str | None = None  # for the history row of a move
    detail: str | None = None  # why nothing moved


def decide(
    current: Stage | None, target: Stage | None, *, trigger: str, policy: Policy
) -> Decision:
    """What automation does: the move `plan_move` allows, or why it does nothing. The trigger
    is the move's reason, which also satisfies the reason a lost stage needs."""
    if target is None:
        return Decision(Outcome.NO_RULE, detail="No rule moves contacts on this event.")
    try:
        move = plan_move(
            current,
            target,
            role=Role.ADMIN,
            source=Source.AUTOMATION,
            reason=trigger,
            policy=policy,
        )
    except (AutomationDeclined, InvalidInput) as refusal:
        return Decision(Outcome.DECLINED, detail=refusal.message)
    if move is None:
        return Decision(Outcome.UNCHANGED, detail=f"Already in {target.name}.")
    return Decision(Outcome.MOVED, reason=move.reason)
