"""Cards, lists and keyboards. Everything a person typed is HTML-escaped, and every text stays
within Telegram's limits (4096 characters a message, 64 bytes of callback data a button)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from aiogram.fsm.state import StatesGroup
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from babel.numbers import format_decimal

from domain.model import Category, Outcome, ReceivedEvent, Role, Source, Stage, TimelineEntry, User
from domain.services.contacts import CompanyCard, ContactCard, ContactDetails
from domain.stages import Pipeline
from domain.transitions import is_other, leaves_closed
from handlers.callbacks import (
    CancelCb,
    CardCb,
    CompanyCb,
    FieldCb,
    LogCb,
    LostCb,
    MoveCb,
    OwnerCb,
    PageCb,
    StagesCb,
    TagsCb,
    UndoCb,
)
from handlers.keys import Keys
from handlers.texts import ACTIVITY, CATEGORY, REFUSALS, reason_label

MESSAGE_LIMIT = 4096
SAFE_LIMIT = 3800  # room for the markup around the pieces we cut
ENTRY_LIMIT = 160
PAGE_SIZE = 8
TIMELINE_FILTERS = ("", "note", "call", "stage", "task")
CATEGORY_MARK = {Category.OPEN: "▫️", Category.WON: "🏆", Category.LOST: "✖️"}


def e(text: object) -> str:
    return escape(str(text), quote=False)


def number(count: int) -> str:
    """A count as the person's language writes it: 1,000,000 in English, 1.000.000 in
    Vietnamese."""
    return format_decimal(count, locale=get_i18n().current_locale)


def short(text: str, limit: int = ENTRY_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def when(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%d/%m %H:%M")


def stage_label(stage: Stage | None) -> str:
    if stage is None:
        return _("no stage")
    return f"{stage.name} ({CATEGORY[stage.category]})"


def card_text(
    card: ContactCard,
    people: dict[int, User],
    *,
    zone: ZoneInfo,
    now: datetime,
    language: str,
    timeline: Sequence[TimelineEntry] | None = None,
    heading: str | None = None,
) -> str:
    details = card.details
    contact = details.contact
    lines = [f"👤 <b>{e(contact.label())}</b>"]
    if details.company:
        lines.append(f"🏢 {e(details.company)}")
    reach = " · ".join(e(x) for x in (contact.phone, contact.email) if x)
    if reach:
        lines.append(f"📞 {reach}")
    stage_line = _("Stage: <b>{stage}</b>").format(stage=e(stage_label(details.stage)))
    if details.stage and contact.stage_entered_at:
        days = max(0, (now - contact.stage_entered_at).days)
        stage_line += " · " + _("{days} days in stage").format(days=days)
    lines.append(stage_line)
    owner = details.owner.name if details.owner else _("nobody")
    facts = [_("Owner: {owner}").format(owner=e(owner))]
    if contact.source:
        facts.append(_("Source: {source}").format(source=e(contact.source)))
    lines.append(" · ".join(facts))
    if contact.value is not None:
        amount = format_decimal(contact.value, locale=language)
        lines.append(_("Value: {amount}").format(amount=amount))
    if contact.external_id:
        lines.append(_("External id: {id}").format(id=e(contact.external_id)))
    if contact.tags:
        lines.append("🏷 " + e(short(", ".join(contact.tags))))
    lines += [
        f"• {e(key)}: {e(short(value, 80))}"
        for key, value in list(contact.custom_fields.items())[:10]
    ]
    if card.open_tasks:
        lines.append("")
        lines.append("⏰ " + _("Open tasks:"))
        for task in card.open_tasks[:5]:
            due = when(task.due_at, zone) if task.due_at else "—"
            late = " ❗" if task.due_at and task.due_at < now else ""
            lines.append(f"  {due}{late} {e(short(task.text, 80))}")
    entries = card.latest if timeline is None else timeline
    if entries:
        lines.append("")
        lines.append("🕘 " + (heading or _("Latest:")))
        for entry in entries:
            who = people.get(entry.by_user_id or 0)
            by = f" — {e(who.name)}" if who else ""
            if entry.event or (
                entry.stage_change and entry.stage_change.source is Source.AUTOMATION
            ):
                by = " — 🤖 " + _("automation")
            kind = ACTIVITY.get(entry.kind, entry.kind)
            reason = ""
            if entry.stage_change and entry.stage_change.reason:
                reason = f" ({e(short(reason_label(entry.stage_change.reason), 60))})"
            if entry.event:
                reason = f": {e(short(event_outcome(entry.event, language), 120))}"
            lines.append(
                f"  {when(entry.at, zone)} <i>{kind}</i> {e(short(entry.text))}{reason}{by}"
            )
    return fit(lines)


def event_outcome(event: ReceivedEvent, language: str) -> str:
    """What automation made of an event that moved nothing (a move shows as a stage change)."""
    if event.outcome is Outcome.DECLINED:
        why = event.detail if language == "en" and event.detail else REFUSALS["automation_declined"]
        return _("declined — {why}").format(why=why)
    if event.outcome is Outcome.UNCHANGED:
        return _("already in that stage")
    return _("no rule for this event")


def fit(lines: list[str]) -> str:
    """Drops lines from the end until the message fits Telegram's limit."""
    while lines and len("\n".join(lines)) > SAFE_LIMIT:
        lines = [*lines[:-2], "…"]
    return "\n".join(lines)


def card_keyboard(
    card: ContactCard, viewer: User, undo: UndoCb | None = None
) -> InlineKeyboardMarkup:
    contact = card.details.contact
    assert contact.id is not None
    keys = Keys()
    if undo is not None:
        keys.button(text="↩ " + _("Undo"), callback_data=undo)
    keys.button(text="🔀 " + _("Stage"), callback_data=StagesCb(id=contact.id, v=contact.version))
    keys.button(text="📝 " + _("Note"), callback_data=LogCb(id=contact.id, kind="note"))
    keys.button(text="📞 " + _("Call"), callback_data=LogCb(id=contact.id, kind="call"))
    keys.button(text="⏰ " + _("Task"), callback_data=LogCb(id=contact.id, kind="task"))
    labels = {
        "": _("All"),
        "note": _("Notes"),
        "call": _("Calls"),
        "stage": _("Stages"),
        "task": _("Tasks"),
    }
    for kind in TIMELINE_FILTERS:
        keys.button(text=labels[kind], callback_data=CardCb(id=contact.id, kind=kind or "all"))
    keys.button(text="🏷 " + _("Tags"), callback_data=TagsCb(id=contact.id, v=contact.version))
    keys.button(text="🗂 " + _("Fields"), callback_data=FieldCb(id=contact.id, v=contact.version))
    sizes = [1, 4, 5, 2] if undo is not None else [4, 5, 2]
    extra = 0
    if contact.company_id:
        keys.button(text="🏢 " + _("Company"), callback_data=CompanyCb(id=contact.company_id))
        extra += 1
    if viewer.role is not Role.AGENT:
        keys.button(
            text="👥 " + _("Reassign"), callback_data=OwnerCb(id=contact.id, v=contact.version)
        )
        extra += 1
    if extra:
        sizes.append(extra)
    keys.adjust(*sizes)
    return keys.as_markup()


def stage_keyboard(
    details: ContactDetails, stages: Sequence[Stage], viewer: User
) -> InlineKeyboardMarkup:
    """Open stages in order, then won, then lost; the current one marked. Reopening is offered
    only to managers and admins."""
    contact = details.contact
    assert contact.id is not None
    current = details.stage
    keys = Keys()
    for stage in Pipeline(stages).ordered():
        if viewer.role is Role.AGENT and leaves_closed(current, stage):
            continue
        assert stage.id is not None
        mark = "• " if current and stage.id == current.id else ""
        keys.button(
            text=f"{mark}{CATEGORY_MARK[stage.category]} {stage.name}",
            callback_data=MoveCb(id=contact.id, stage=stage.id, v=contact.version),
        )
    keys.adjust(2)
    keys.row(
        InlineKeyboardButton(text="↩ " + _("Back"), callback_data=CardCb(id=contact.id).pack())
    )
    return keys.as_markup()


def reasons_keyboard(
    contact_id: int, stage_id: int, version: int, reasons: Sequence[str]
) -> InlineKeyboardMarkup:
    keys = Keys()
    for number, reason in enumerate(reasons):
        other = is_other(reason)
        keys.button(
            text=_("Other…") if other else reason_label(reason),
            callback_data=LostCb(
                id=contact_id, stage=stage_id, v=version, r=-1 if other else number
            ),
        )
    keys.button(text="↩ " + _("Back"), callback_data=CardCb(id=contact_id))
    keys.adjust(2)
    return keys.as_markup()


def cancel_keyboard(flow: type[StatesGroup], contact_id: int = 0) -> InlineKeyboardMarkup:
    """Cancel for a question of `flow` (about a contact)."""
    keys = Keys()
    keys.button(text="✖️ " + _("Cancel"), callback_data=cancel_of(flow, contact_id))
    return keys.as_markup()


def cancel_of(flow: type[StatesGroup], contact_id: int = 0) -> CancelCb:
    return CancelCb(flow=flow.__name__, id=contact_id)


def contact_button_text(details: ContactDetails, *, with_owner: bool = False) -> str:
    stage = details.stage.name if details.stage else _("no stage")
    text = f"{details.contact.label()} · {stage}"
    if with_owner and details.owner:
        text += f" · {details.owner.name}"
    return short(text, 60)


def list_keyboard(
    found: Sequence[ContactDetails],
    *,
    list_name: str,
    page: int,
    more: bool,
    with_owner: bool = False,
) -> InlineKeyboardMarkup:
    keys = Keys()
    for details in found:
        assert details.contact.id is not None
        keys.row(
            InlineKeyboardButton(
                text=contact_button_text(details, with_owner=with_owner),
                callback_data=CardCb(id=details.contact.id).pack(),
            )
        )
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(
                text="◀", callback_data=PageCb(list=list_name, page=page - 1).pack()
            )
        )
    if more:
        nav.append(
            InlineKeyboardButton(
                text="▶", callback_data=PageCb(list=list_name, page=page + 1).pack()
            )
        )
    if nav:
        keys.row(*nav)
    return keys.as_markup()


def company_text(card: CompanyCard) -> str:
    lines = [f"🏢 <b>{e(card.company.name)}</b>"]
    if not card.contacts:
        lines.append(_("You cannot see any of its contacts."))
    for details in card.contacts:
        owner = details.owner.name if details.owner else _("nobody")
        lines.append(
            f"• {e(details.contact.label())} — {e(stage_label(details.stage))} — {e(owner)}"
        )
    return fit(lines)


def owners_keyboard(contact_id: int, version: int, owners: Sequence[User]) -> InlineKeyboardMarkup:
    keys = Keys()
    for owner in owners:
        assert owner.id is not None
        keys.button(
            text=short(owner.name + (f" · {owner.team}" if owner.team else ""), 40),
            callback_data=OwnerCb(id=contact_id, v=version, owner=owner.id),
        )
    keys.button(text="↩ " + _("Back"), callback_data=CardCb(id=contact_id))
    keys.adjust(2)
    return keys.as_markup()
