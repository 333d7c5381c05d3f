"""Messages that tell people about new leads from the HTTP API (sent by bot.lead_notifier, not in
answer to an update): one lead as its card with the stage buttons at once, several that waited
for the same person as one list."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.i18n import gettext as _

from domain.model import Stage, User
from domain.services.contacts import ContactCard, ContactDetails
from handlers import render

LIST_LIMIT = render.PAGE_SIZE


def new_lead(
    card: ContactCard,
    people: dict[int, User],
    stages: Sequence[Stage],
    viewer: User,
    *,
    zone: ZoneInfo,
    now: datetime,
    language: str,
) -> tuple[str, InlineKeyboardMarkup]:
    owner = card.details.owner
    if owner is not None and owner.id == viewer.id:
        head = "🆕 " + _("A new lead for you.")
    else:
        head = "🆕 " + _("A new lead nobody could be given; choose its owner with 👥 Reassign.")
    text = render.card_text(card, people, zone=zone, now=now, language=language)
    return f"{head}\n\n{text}", render.stage_keyboard(card.details, stages, viewer)


def new_leads(count: int, shown: Sequence[ContactDetails]) -> tuple[str, InlineKeyboardMarkup]:
    """`count` leads that waited for the same person, the first of them as buttons."""
    lines = ["🆕 " + _("{count} new leads for you:").format(count=count)]
    if count > len(shown):
        lines.append(_("The first {shown} are below; /my lists them all.").format(shown=len(shown)))
    keyboard = render.list_keyboard(shown, list_name="new", page=0, more=False)
    return "\n".join(lines), keyboard
