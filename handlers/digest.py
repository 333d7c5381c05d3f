"""The morning messages and reminders, as people read them, and `/digest` to choose when and
what: on or off, the time, the time zone and (managers, admins) the digest's sections."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from domain.errors import DomainError
from domain.model import DigestSection, DigestSettings, Role, User
from domain.services.digests import DIGEST, DigestService, Due, MorningDigest, TaskReminder
from handlers import render
from handlers.callbacks import CardCb, DigestCb
from handlers.keys import Keys
from handlers.replies import show
from handlers.report_view import funnel_chart
from handlers.texts import refusal

TIMES = ("06:30", "07:00", "07:30", "08:00", "08:30", "09:00")
ZONES = ("Asia/Ho_Chi_Minh", "Asia/Bangkok", "Asia/Shanghai", "Asia/Singapore", "UTC")
SECTION = {
    DigestSection.NEW: __("New leads"),
    DigestSection.MOVES: __("Stage moves"),
    DigestSection.CONVERTED: __("Converted"),
    DigestSection.LOST: __("Lost"),
    DigestSection.IDLE: __("Idle leads"),
    DigestSection.TOP: __("Top agents"),
    DigestSection.CHART: __("Funnel chart"),
}
IDLE_SHOWN = 15
DIGEST_IDLE_SHOWN = 8  # the digest is read at a glance; /idle lists them all


@dataclass(frozen=True, slots=True)
class Composed:
    text: str
    keyboard: InlineKeyboardMarkup | None = None
    chart: bytes | None = None  # a PNG sent after the text


class DigestInput(StatesGroup):
    time = State()
    zone = State()


# --- what is sent ---------------------------------------------------------------------------


async def compose(due: Due, digests: DigestService) -> Composed | None:
    """The morning message of `due`, or None when there is nothing to tell."""
    if due.kind == DIGEST:
        digest = await digests.digest(due, idle_limit=DIGEST_IDLE_SHOWN + 1)
        # Drawing the chart takes a tenth of a second or more: off the event loop.
        return await asyncio.to_thread(render_digest, digest, due.user)
    idle = await digests.idle_leads(due.user, limit=IDLE_SHOWN + 1)
    if not idle:
        return None
    lines = [_("☀️ Good morning! These leads of yours are waiting for you:")]
    keys = Keys()
    for details in idle[:IDLE_SHOWN]:
        assert details.contact.id is not None
        keys.button(
            text=render.contact_button_text(details), callback_data=CardCb(id=details.contact.id)
        )
    if len(idle) > IDLE_SHOWN:
        lines.append(_("…and more: /idle shows them all."))
    keys.adjust(1)
    return Composed("\n".join(lines), keys.as_markup())


def render_digest(digest: MorningDigest, reader: User) -> Composed:
    """Only the sections the reader chose. A quiet day still gets a message, short, as a
    manager expects the digest every morning and would otherwise wonder whether it broke."""
    sections, summary = digest.sections, digest.summary
    day = digest.day.strftime("%d/%m")
    if reader.role is Role.ADMIN:
        head = _("☀️ Good morning! Yesterday ({day}) across all teams:").format(day=day)
    else:
        head = _("☀️ Good morning! Your team's yesterday ({day}):").format(day=day)
    lines = [head]
    if summary.quiet:
        lines.append(_("A quiet day: no new leads, no stage moves, nothing won or lost."))
    else:
        figures = (
            (DigestSection.NEW, "🆕", _("New leads: <b>{n}</b>"), summary.new),
            (DigestSection.MOVES, "🔀", _("Stage moves: <b>{n}</b>"), summary.moves),
            (DigestSection.CONVERTED, "🏆", _("Converted: <b>{n}</b>"), summary.converted),
            (DigestSection.LOST, "✖️", _("Lost: <b>{n}</b>"), summary.lost),
        )
        for section, mark, text, n in figures:
            if section in sections:
                lines.append(f"{mark} " + text.format(n=n))
        if DigestSection.CONVERTED in sections and not summary.won_stage_defined:
            lines.append(_("No won stage is defined, so nothing counts as converted."))
        if digest.top:
            lines.append("")
            lines.append(_("Top agents:"))
            for place, row in enumerate(digest.top, start=1):
                lines.append(
                    _("{place}. {name}: {won} won, {new} new").format(
                        place=place, name=render.e(row.name), won=row.converted, new=row.new
                    )
                )
    keys = Keys()
    if digest.idle:
        lines.append("")
        lines.append(_("⏳ Leads idle too long:"))
        for details in digest.idle[:DIGEST_IDLE_SHOWN]:
            assert details.contact.id is not None
            keys.button(
                text=render.contact_button_text(details, with_owner=True),
                callback_data=CardCb(id=details.contact.id),
            )
        if len(digest.idle) > DIGEST_IDLE_SHOWN:
            lines.append(_("…and more: /idle shows them all."))
    elif DigestSection.IDLE in sections:
        lines.append(_("⏳ No lead is idle too long."))
    if not sections:
        lines.append(_("You chose no section: /digest chooses what it shows."))
    keys.adjust(1)
    chart = _funnel_chart(digest) if digest.funnel is not None else None
    return Composed("\n".join(lines), keys.as_markup() if digest.idle else None, chart)


def _funnel_chart(digest: MorningDigest) -> bytes:
    funnel = digest.funnel
    assert funnel is not None
    period = funnel.period
    title = _("Funnel {first} – {last}").format(
        first=period.first.strftime("%d/%m"), last=period.last.strftime("%d/%m")
    )
    return funnel_chart(funnel, title)


def task_reminder(reminder: TaskReminder, zone: ZoneInfo) -> Composed:
    task, contact = reminder.task, reminder.contact
    assert contact.id is not None
    due = render.when(task.due_at, zone) if task.due_at else ""
    text = _("⏰ Task due {when} for <b>{name}</b>: {task}").format(
        when=due, name=render.e(contact.label()), task=render.e(render.short(task.text, 200))
    )
    keys = Keys()
    keys.button(text=_("Open the card"), callback_data=CardCb(id=contact.id))
    return Composed(text, keys.as_markup())


# --- /digest --------------------------------------------------------------------------------


async def digest_command(message: Message, user: User, digests: DigestService) -> None:
    settings = await digests.settings_of(user)
    text, keyboard = _settings_view(settings, user)
    await message.answer(text, reply_markup=keyboard)


def _settings_view(settings: DigestSettings, user: User) -> tuple[str, InlineKeyboardMarkup]:
    what = (
        _("Each morning you receive the digest of your team's funnel.")
        if user.role is not Role.AGENT
        else _("Each morning you receive the list of your idle leads.")
    )
    if settings.blocked_at is not None:
        state = _("paused, because the bot could not reach you")
    elif settings.enabled:
        state = _("on")
    else:
        state = _("off")
    lines = [
        what,
        _("Status: <b>{state}</b>").format(state=state),
        _("Time: <b>{time}</b> ({zone})").format(
            time=settings.send_at.strftime("%H:%M"), zone=render.e(settings.timezone)
        ),
    ]
    keys = Keys()
    switch = _("Switch off") if settings.enabled and not settings.blocked_at else _("Switch on")
    keys.button(text=switch, callback_data=DigestCb(act="onoff"))
    keys.button(text="🕗 " + _("Time"), callback_data=DigestCb(act="times"))
    keys.button(text="🌏 " + _("Time zone"), callback_data=DigestCb(act="zones"))
    sizes = [3]
    if user.role is not Role.AGENT:
        for section, label in SECTION.items():
            mark = "✅" if section in settings.sections else "▫️"
            keys.button(text=f"{mark} {label}", callback_data=DigestCb(act="sec", arg=section))
        sizes += [2] * ((len(SECTION) + 1) // 2)
    keys.adjust(*sizes)
    return "\n".join(lines), keys.as_markup()


async def digest_button(
    query: CallbackQuery,
    callback_data: DigestCb,
    user: User,
    digests: DigestService,
    state: FSMContext,
) -> None:
    act, arg = callback_data.act, callback_data.arg
    if act == "times":
        keys = Keys()
        for choice in TIMES:
            # ":" separates callback data fields; "08h30" reads as well as "08:30"
            time_arg = choice.replace(":", "h")
            keys.button(text=choice, callback_data=DigestCb(act="time", arg=time_arg))
        keys.button(text=_("Another time"), callback_data=DigestCb(act="ask", arg="time"))
        keys.adjust(3)
        await show(query, _("When should it arrive?"), keys.as_markup())
        return
    if act == "zones":
        keys = Keys()
        for zone in ZONES:
            keys.button(text=zone, callback_data=DigestCb(act="zone", arg=zone))
        keys.button(text=_("Another time zone"), callback_data=DigestCb(act="ask", arg="zone"))
        keys.adjust(2)
        await show(query, _("Which time zone?"), keys.as_markup())
        return
    if act == "ask":
        await state.set_state(DigestInput.time if arg == "time" else DigestInput.zone)
        prompt = (
            _("Send the time, e.g. 07:45.")
            if arg == "time"
            else _("Send the time zone, e.g. Asia/Ho_Chi_Minh or Europe/Berlin.")
        )
        await show(query, prompt, render.cancel_keyboard(DigestInput))
        return
    try:
        if act == "onoff":
            current = await digests.settings_of(user)
            on = not current.enabled or current.blocked_at is not None
            settings = await digests.update(user, enabled=on)
        elif act == "time":
            settings = await digests.update(user, send_at=arg)
        elif act == "zone" and arg in ZONES:
            settings = await digests.update(user, timezone=arg)
        elif act == "sec" and arg in set(DigestSection) and user.role is not Role.AGENT:
            settings = await digests.update(user, toggle=DigestSection(arg))
        else:
            await query.answer(_("Unknown action."), show_alert=True)
            return
    except DomainError as error:
        await query.answer(refusal(error), show_alert=True)
        return
    text, keyboard = _settings_view(settings, user)
    await show(query, text, keyboard)


async def typed_setting(
    message: Message, user: User, digests: DigestService, state: FSMContext
) -> None:
    asking = await state.get_state()
    try:
        if asking == DigestInput.time.state:
            settings = await digests.update(user, send_at=message.text or "")
        else:
            settings = await digests.update(user, timezone=message.text or "")
    except DomainError as error:
        await message.answer(refusal(error))  # the question stands: they may try again
        return
    await state.clear()
    text, keyboard = _settings_view(settings, user)
    await message.answer(text, reply_markup=keyboard)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(digest_command, Command("digest"))
    router.message.register(typed_setting, StateFilter(DigestInput.time, DigestInput.zone), F.text)
    router.callback_query.register(digest_button, DigestCb.filter())
    return router
