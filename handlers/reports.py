"""/report: the reports of docs/reports.md in chat. One message shows a report as a chart with
a short summary; its buttons switch the report and the period by replacing the photo
(editMessageMedia), so browsing reports adds no messages. Every button carries its report and
period, so an old one still works; the service counts only what the person may see."""

from __future__ import annotations

import asyncio
from datetime import date

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
)
from aiogram.utils.i18n import gettext as _

from domain.errors import InvalidInput
from domain.model import Role, User
from domain.reports import Period, PeriodOrder, PeriodTooLong, Report, Span, custom_period
from domain.services.reports import ReportService
from handlers import render
from handlers.callbacks import ReportCb
from handlers.dates import parse_range
from handlers.keys import Keys
from handlers.report_view import REPORTS, SPANS, Rendered
from handlers.report_view import render as render_report

TYPED = "c"  # a typed period: its first and last day travel in the button
ASK = "ask"  # asks for the dates of a period
DEFAULT_SPAN = Span.DAYS_30


class ReportInput(StatesGroup):
    dates = State()


def _as_number(day: date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _from_number(number: int) -> date:
    return date(number // 10_000, number // 100 % 100, number % 100)


def _callback(key: str, span: Span | None, period: Period) -> ReportCb:
    if span is not None:
        return ReportCb(r=key, p=span.value)
    return ReportCb(r=key, p=TYPED, a=_as_number(period.first), b=_as_number(period.last))


def keyboard(key: str, span: Span | None, period: Period) -> InlineKeyboardMarkup:
    """The reports, then the periods; the ones shown are marked."""
    keys = Keys()
    for other, label in REPORTS.items():
        mark = "• " if other == key else ""
        keys.button(text=f"{mark}{label}", callback_data=_callback(other, span, period))
    for other_span, label in SPANS.items():
        mark = "• " if other_span is span else ""
        keys.button(text=f"{mark}{label}", callback_data=_callback(key, other_span, period))
    typed = "• " if span is None else ""
    keys.button(text=f"{typed}📅 " + _("Dates…"), callback_data=ReportCb(r=key, p=ASK))
    keys.adjust(2, 2, 2, 3, 3, 1)
    return keys.as_markup()


async def report_command(message: Message, user: User, reports: ReportService) -> None:
    period = reports.span(DEFAULT_SPAN)
    keys = Keys()
    for key, label in REPORTS.items():
        keys.button(text=str(label), callback_data=_callback(key, DEFAULT_SPAN, period))
    keys.adjust(2)
    await message.answer(
        _(
            "📊 Which report? Each comes as a chart with a summary; the buttons under it switch "
            "the report and the period (the last 30 days first). You see the numbers of {scope}."
        ).format(scope=_scope(user)),
        reply_markup=keys.as_markup(),
    )


def _scope(user: User) -> str:
    if user.role is Role.AGENT:
        return _("your own leads")
    if user.role is Role.MANAGER:
        return _("your team's leads")
    return _("every lead")


async def _produce(reports: ReportService, user: User, key: str, period: Period) -> Report:
    match key:
        case "snap":
            return await reports.snapshot(user)
        case "fun":
            return await reports.funnel(user, period)
        case "src":
            return await reports.sources(user, period)
        case "conv":
            return await reports.conversion(user, period)
        case "lead":
            return await reports.leaderboard(user, period)
        case _:
            return await reports.time_in_stage(user, period)


async def _rendered(
    reports: ReportService, user: User, key: str, span: Span | None, period: Period
) -> Rendered:
    report = await _produce(reports, user, key, period)
    # Drawing takes a good part of a second: off the event loop, so other chats go on.
    return await asyncio.to_thread(render_report, key, report, span)


def _photo(rendered: Rendered) -> BufferedInputFile:
    return BufferedInputFile(rendered.chart, filename="report.png")


async def report_button(
    query: CallbackQuery,
    callback_data: ReportCb,
    user: User,
    reports: ReportService,
    state: FSMContext,
) -> None:
    key, chosen = callback_data.r, callback_data.p
    if key not in REPORTS:
        await query.answer(_("Unknown report."), show_alert=True)
        return
    if chosen == ASK:
        await _ask_for_dates(query, key, state)
        return
    span: Span | None = None
    try:
        if chosen == TYPED:
            period = custom_period(_from_number(callback_data.a), _from_number(callback_data.b))
        else:
            span = Span(chosen)
            period = reports.span(span)
    except (ValueError, InvalidInput):  # not a date, not a period: a forged button
        await query.answer(_("Unknown period."), show_alert=True)
        return
    message = query.message
    if not isinstance(message, Message):
        await query.answer(
            _("This message is too old to change; send the command again."), show_alert=True
        )
        return
    rendered = await _rendered(reports, user, key, span, period)
    markup = keyboard(key, span, period)
    try:
        await message.edit_media(
            InputMediaPhoto(media=_photo(rendered), caption=rendered.caption), reply_markup=markup
        )
    except TelegramBadRequest as error:
        # A server that cannot turn this (text) message into a photo: send the photo instead.
        if "not modified" not in error.message:
            await message.answer_photo(
                _photo(rendered), caption=rendered.caption, reply_markup=markup
            )
    await query.answer()


async def _ask_for_dates(query: CallbackQuery, key: str, state: FSMContext) -> None:
    await state.set_state(ReportInput.dates)
    await state.update_data(report=key)
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(
            _dates_prompt(), reply_markup=render.cancel_keyboard(ReportInput)
        )


def _dates_prompt() -> str:
    return _(
        "Send the period as <code>01/03/2025 – 31/03/2025</code> (or <code>2025-03-01 – "
        "2025-03-31</code>); one date is that day."
    )


async def typed_dates(
    message: Message, user: User, reports: ReportService, state: FSMContext
) -> None:
    days = parse_range(message.text or "")
    if days is None:
        await message.answer(_("I could not read those dates.") + "\n" + _dates_prompt())
        return  # the question stands: they may try again
    try:
        period = custom_period(*days)
    except PeriodOrder:
        await message.answer(_("The period ends before it starts; send it the other way round."))
        return
    except PeriodTooLong:
        await message.answer(_("That is over three years; send a shorter period."))
        return
    key = (await state.get_data()).get("report")
    await state.clear()
    key = key if key in REPORTS else "fun"
    rendered = await _rendered(reports, user, key, None, period)
    await message.answer_photo(
        _photo(rendered), caption=rendered.caption, reply_markup=keyboard(key, None, period)
    )


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(report_command, Command("report", "reports"))
    router.message.register(
        typed_dates, StateFilter(ReportInput.dates), F.text, ~F.text.startswith("/")
    )
    router.callback_query.register(report_button, ReportCb.filter())
    return router
