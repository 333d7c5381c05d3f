"""Texts that several handlers share, translated; and domain refusals in the reader's language."""

from __future__ import annotations

from html import escape

from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from domain.errors import DomainError, StaleVersion
from domain.model import Category, Role
from domain.services.contacts import UNDO_REASON

CATEGORY = {Category.OPEN: __("open"), Category.WON: __("won"), Category.LOST: __("lost")}
ROLE = {Role.ADMIN: __("admin"), Role.MANAGER: __("manager"), Role.AGENT: __("agent")}
ACTIVITY = {
    "note": __("Note"),
    "call": __("Call"),
    "email": __("Email"),
    "meeting": __("Meeting"),
    "task": __("Task"),
    "stage": __("Stage"),
    "event": __("Event"),
}

# The settings' default lost reasons, shown in the reader's language; a loss records the reason
# as listed in the settings, so that reports and exports group it the same for every reader.
LOST_REASON = {
    "Price": __("Price"),
    "Competitor": __("Competitor"),
    "No budget": __("No budget"),
    "No response": __("No response"),
    "Not a fit": __("Not a fit"),
    "Other": __("Other"),
}


# Every reason recorded in English whoever gave it, in the reader's language.
REASON = {**LOST_REASON, UNDO_REASON: __("undone")}


def reason_label(reason: str) -> str:
    return str(REASON.get(reason, reason))


# Refusals by their code, for readers of other languages than the domain's English. English
# readers get the domain's own message, which names the stage or contact concerned.
REFUSALS = {
    "lost_reason_required": __("Moving a lead to a lost stage needs a reason."),
    "reason_required": __("Reopening a won or lost lead needs a reason."),
    "reopen_not_allowed": __("Only a manager or an admin can reopen a won or lost lead."),
    "forward_only": __("Leads only move forward here."),
    "access_denied": __("You may not touch this contact."),
    "not_found": __("That no longer exists."),
    "last_won_stage": __("This is the last won stage; make another stage won first."),
    "stage_not_empty": __("This stage holds contacts; choose where they go."),
    "duplicate": __("That name is taken."),
    "duplicate_contact": __("A contact with that phone, email or id exists already."),
    "automation_declined": __("Automation does not move this lead."),
    "nothing_to_undo": __("There is nothing to undo: the lead changed since, or it is too late."),
    "field_value": __("That value does not fit this field."),
    "selection_changed": __(
        "The selection changed since you confirmed it; nothing was moved. Ask again."
    ),
}


def explain(error: DomainError, language: str) -> str:
    if isinstance(error, StaleVersion):
        if error.by_actor:
            return _("You changed this lead since, from another message. Here is the fresh card.")
        who = error.changed_by or _("Someone else")
        return _("{who} changed this lead meanwhile. Here is the fresh card.").format(who=who)
    if language == "en" or error.code not in REFUSALS:
        return error.message
    return str(REFUSALS[error.code])


def refusal(error: DomainError) -> str:
    """A refusal to send as a message: in the reader's language, safe as HTML (it may quote
    what someone typed)."""
    return escape(explain(error, get_i18n().current_locale), quote=False)


def refusal_asking_again(error: DomainError) -> str:
    """A refusal of an answer to a question that stays open."""
    return refusal(error) + "\n" + _("Send it again, or press Cancel.")


def help_text(role: Role | None) -> str:
    lines = [
        _("<b>Stagekeeper</b> keeps your leads moving."),
        "",
        _("/find <i>name, phone or email</i> — look up a contact (or just type it)"),
        _("/my — your open leads by stage"),
        _("/idle <i>days</i> — leads nobody touched for that long"),
        _("/new — add a contact"),
        _("/export <i>stage</i> — your contacts as a CSV file (all, without a stage)"),
        _("/lang — language"),
        _("/cancel — stop what you are doing"),
        _("/move <i>search</i> — move every matching lead to one stage"),
        _("/undo — undo a bulk move, import or stage deletion"),
        _("/views — saved lists of contacts"),
        _("/digest — your morning message: when, and what it holds"),
        _("/report — reports with charts: funnel, sources, conversion, leaderboard…"),
    ]
    if role is Role.ADMIN:
        lines.append(_("/stages — add, rename, reorder, recategorize or delete stages"))
        lines.append(_("/users — people and their access"))
        lines.append(_("/fields — custom fields on every card (text, number, date, choice)"))
        lines.append(_("/rules — which stage each event of the HTTP API moves a contact to"))
        lines.append(_("/apikeys — keys of the HTTP API"))
    return "\n".join(lines)


def access_refusal(*, switched_off: bool) -> str:
    if switched_off:
        return _("Your access is switched off. Ask an admin if that is a mistake.")
    return _("You don't have access yet. Send /start to ask for it.")
