"""An agent's day: find contacts, open cards, move stages with buttons, log notes, calls and
tasks, reassign, see a company. Parse, call the service, render."""

from __future__ import annotations

import contextlib
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from domain.errors import DomainError, InvalidInput, StaleVersion
from domain.model import ActivityKind, TimelineEntry, User, utcnow
from domain.services.contacts import (
    ContactCard,
    ContactDetails,
    ContactService,
    StageMoveResult,
    StageQuestion,
)
from domain.services.stages import StageService
from domain.transitions import Policy
from handlers import render
from handlers.callbacks import (
    CancelCb,
    CardCb,
    CompanyCb,
    LogCb,
    LostCb,
    MoveCb,
    OwnerCb,
    PageCb,
    StagesCb,
    UndoCb,
)
from handlers.dates import parse_due
from handlers.replies import show
from handlers.texts import ACTIVITY, explain, refusal, refusal_asking_again


class Ask(StatesGroup):
    lost_reason = State()
    reopen_reason = State()
    log_text = State()
    task_due = State()


# --- finding -------------------------------------------------------------------------------


async def find_command(
    message: Message,
    command: CommandObject,
    user: User,
    contacts: ContactService,
    state: FSMContext,
    zone: ZoneInfo,
) -> None:
    if not command.args:
        await message.answer(_("What should I look for? For example: /find nguyen van an"))
        return
    await _search(message, command.args, user, contacts, state, zone)


async def plain_text(
    message: Message, user: User, contacts: ContactService, state: FSMContext, zone: ZoneInfo
) -> None:
    await _search(message, message.text or "", user, contacts, state, zone)


async def _search(
    message: Message,
    query: str,
    user: User,
    contacts: ContactService,
    state: FSMContext,
    zone: ZoneInfo,
) -> None:
    query = query.strip()[:200]
    lookup = await contacts.look_up(user, query, limit=render.PAGE_SIZE + 1)
    found = lookup.found
    if not found:
        await message.answer(_("Nothing found for “{query}”.").format(query=render.e(query)))
        return
    if lookup.card is not None:
        text, keyboard = _rendered(lookup.card, user, zone)
        await message.answer(text, reply_markup=keyboard)
        return
    await state.update_data(find=query)
    await message.answer(
        _("Found for “{query}”:").format(query=render.e(query)),
        reply_markup=render.list_keyboard(
            found[: render.PAGE_SIZE],
            list_name="find",
            page=0,
            more=len(found) > render.PAGE_SIZE,
        ),
    )


async def my_leads(message: Message, user: User, contacts: ContactService) -> None:
    leads = await contacts.open_leads(user)
    if not leads:
        await message.answer(_("You have no open leads. /new adds one."))
        return
    text, keyboard = _my_page(leads, 0)
    await message.answer(text, reply_markup=keyboard)


def _my_page(leads: list[ContactDetails], page: int) -> tuple[str, InlineKeyboardMarkup]:
    chunk = leads[page * render.PAGE_SIZE : (page + 1) * render.PAGE_SIZE]
    counts: dict[str, int] = {}
    for details in leads:
        name = details.stage.name if details.stage else _("no stage")
        counts[name] = counts.get(name, 0) + 1
    summary = " · ".join(f"{render.e(name)}: {count}" for name, count in counts.items())
    text = _("Your open leads ({count}):").format(count=len(leads)) + "\n" + summary
    more = len(leads) > (page + 1) * render.PAGE_SIZE
    return text, render.list_keyboard(chunk, list_name="my", page=page, more=more)


async def idle_leads(
    message: Message,
    command: CommandObject,
    user: User,
    contacts: ContactService,
    state: FSMContext,
) -> None:
    days = 7
    if command.args:
        if not command.args.strip().isdigit():
            await message.answer(_("Give the number of days, e.g. /idle 14"))
            return
        days = int(command.args.strip())
    try:
        leads = await contacts.idle_leads(user, days, limit=100)
    except DomainError as error:
        await message.answer(refusal(error))
        return
    if not leads:
        await message.answer(_("No open lead has been idle for {days} days.").format(days=days))
        return
    await state.update_data(idle=days)
    await message.answer(
        _("Open leads idle for {days} days or more ({count}):").format(days=days, count=len(leads)),
        reply_markup=render.list_keyboard(
            leads[: render.PAGE_SIZE],
            list_name="idle",
            page=0,
            more=len(leads) > render.PAGE_SIZE,
            with_owner=True,
        ),
    )


async def turn_page(
    query: CallbackQuery,
    callback_data: PageCb,
    user: User,
    contacts: ContactService,
    state: FSMContext,
) -> None:
    data = await state.get_data()
    page = max(0, min(callback_data.page, 100))
    if callback_data.list == "my":
        leads = await contacts.open_leads(user)
        text, keyboard = _my_page(leads, page)
        await show(query, text, keyboard)
        return
    if callback_data.list == "find" and "find" in data:
        found = await contacts.find(
            user, data["find"], limit=render.PAGE_SIZE + 1, offset=page * render.PAGE_SIZE
        )
        with_owner = False
    elif callback_data.list == "idle" and "idle" in data:
        everything = await contacts.idle_leads(user, int(data["idle"]), limit=100)
        found = everything[page * render.PAGE_SIZE : (page + 1) * render.PAGE_SIZE + 1]
        with_owner = True
    else:
        await query.answer(_("This list is out of date; ask again."), show_alert=True)
        return
    keyboard = render.list_keyboard(
        found[: render.PAGE_SIZE],
        list_name=callback_data.list,
        page=page,
        more=len(found) > render.PAGE_SIZE,
        with_owner=with_owner,
    )
    text = query.message.html_text if isinstance(query.message, Message) else "…"
    await show(query, text or "…", keyboard)


# --- the card ------------------------------------------------------------------------------


async def open_card(
    query: CallbackQuery,
    callback_data: CardCb,
    user: User,
    contacts: ContactService,
    state: FSMContext,
    zone: ZoneInfo,
) -> None:
    await state.clear()
    kind = "" if callback_data.kind in ("", "all") else callback_data.kind
    if kind not in render.TIMELINE_FILTERS:
        await query.answer(_("Unknown filter."), show_alert=True)
        return
    try:
        text, keyboard = await _card(contacts, user, callback_data.id, zone, kind=kind)
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return
    await show(query, text, keyboard)


async def show_stages(
    query: CallbackQuery,
    callback_data: StagesCb,
    user: User,
    contacts: ContactService,
    stages: StageService,
) -> None:
    details = await contact_or_alert(query, contacts, user, callback_data.id)
    if details is None:
        return
    await show(query, *await _stage_question(details, user, stages))


async def _stage_question(
    details: ContactDetails, user: User, stages: StageService
) -> tuple[str, InlineKeyboardMarkup]:
    text = _("Move <b>{name}</b> to which stage? (now: {stage})").format(
        name=render.e(details.contact.label()), stage=render.e(render.stage_label(details.stage))
    )
    return text, render.stage_keyboard(details, await stages.ordered(), user)


async def choose_stage(
    query: CallbackQuery,
    callback_data: MoveCb,
    user: User,
    contacts: ContactService,
    stages: StageService,
    state: FSMContext,
    policy: Policy,
    zone: ZoneInfo,
) -> None:
    try:
        choice = await contacts.choose_stage(
            user, callback_data.id, callback_data.stage, expected_version=callback_data.v
        )
    except DomainError as error:
        await refused_on_card(query, error, contacts, user, callback_data.id, zone)
        return
    details, target = choice.card.details, choice.target
    name = render.e(details.contact.label())
    match choice.asks:
        case StageQuestion.OTHER_STAGE:
            await query.answer(
                _("The stage {stage} was deleted meanwhile; choose another.").format(
                    stage=target.name
                ),
                show_alert=True,
            )
            await show(query, *await _stage_question(details, user, stages), answered=True)
        case StageQuestion.REOPEN_REASON:
            await state.set_state(Ask.reopen_reason)
            await state.update_data(id=callback_data.id, stage=target.id, v=callback_data.v)
            await show(
                query,
                _("Why reopen <b>{name}</b> ({stage})? Send the reason.").format(
                    name=name, stage=render.e(render.stage_label(details.stage))
                ),
                render.cancel_keyboard(Ask, callback_data.id),
            )
        case StageQuestion.LOST_REASON:
            await show(
                query,
                _("Why was <b>{name}</b> lost?").format(name=name),
                render.reasons_keyboard(
                    callback_data.id, callback_data.stage, callback_data.v, policy.lost_reasons
                ),
            )
        case None:
            assert choice.move is not None
            await _show_moved(query, user, zone, choice.move, choice.card)


async def lost_reason_button(
    query: CallbackQuery,
    callback_data: LostCb,
    user: User,
    contacts: ContactService,
    state: FSMContext,
    policy: Policy,
    zone: ZoneInfo,
) -> None:
    if callback_data.r == -1:
        await state.set_state(Ask.lost_reason)
        await state.update_data(id=callback_data.id, stage=callback_data.stage, v=callback_data.v)
        await show(
            query,
            _("Describe the reason in a message."),
            render.cancel_keyboard(Ask, callback_data.id),
        )
        return
    if not 0 <= callback_data.r < len(policy.lost_reasons):
        await query.answer(_("That reason is no longer offered; choose again."), show_alert=True)
        return
    reason = policy.lost_reasons[callback_data.r]
    await _move(
        query, user, contacts, zone, callback_data.id, callback_data.stage, callback_data.v, reason
    )


async def typed_reason(
    message: Message, user: User, contacts: ContactService, state: FSMContext, zone: ZoneInfo
) -> None:
    data = await state.get_data()
    try:
        result, card = await contacts.move(
            user, data["id"], data["stage"], reason=message.text, expected_version=data["v"]
        )
    except InvalidInput as error:  # too long, say: the question stays open
        await _ask_again(message, error, data["id"])
        return
    except DomainError as error:
        await state.clear()
        await message.answer(refusal(error))
        await send_card(message, contacts, user, data["id"], zone)
        return
    text, keyboard = _rendered(card, user, zone, _undo_of(result))
    await message.answer(text, reply_markup=keyboard)
    # Only once answered: a worker that dies before leaves the question open, so that the
    # message delivered again is still taken as the reason (and told the lead is there).
    await state.clear()


async def undo(
    query: CallbackQuery,
    callback_data: UndoCb,
    user: User,
    contacts: ContactService,
    zone: ZoneInfo,
) -> None:
    try:
        await contacts.undo_move(user, callback_data.id, expected_version=callback_data.v)
    except DomainError as error:
        await refused_on_card(query, error, contacts, user, callback_data.id, zone)
        return
    await query.answer(_("Undone."))
    text, keyboard = await _card(contacts, user, callback_data.id, zone)
    await show(query, text, keyboard, answered=True)


async def _move(
    query: CallbackQuery,
    user: User,
    contacts: ContactService,
    zone: ZoneInfo,
    contact_id: int,
    stage_id: int | None,
    version: int,
    reason: str | None,
) -> None:
    try:
        result, card = await contacts.move(
            user, contact_id, stage_id, reason=reason, expected_version=version
        )
    except DomainError as error:
        await refused_on_card(query, error, contacts, user, contact_id, zone)
        return
    await _show_moved(query, user, zone, result, card)


async def _show_moved(
    query: CallbackQuery, user: User, zone: ZoneInfo, result: StageMoveResult, card: ContactCard
) -> None:
    await query.answer(_("Moved.") if result.changed else _("It is already in that stage."))
    text, keyboard = _rendered(card, user, zone, _undo_of(result))
    await show(query, text, keyboard, answered=True)


def _undo_of(result: StageMoveResult) -> UndoCb | None:
    contact = result.contact
    if not result.undoable or contact.id is None:
        return None
    return UndoCb(id=contact.id, v=contact.version)


async def refused_on_card(
    query: CallbackQuery,
    error: DomainError,
    contacts: ContactService,
    user: User,
    contact_id: int,
    zone: ZoneInfo,
) -> None:
    await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
    if isinstance(error, StaleVersion) or error.code != "access_denied":
        try:
            text, keyboard = await _card(contacts, user, contact_id, zone)
        except DomainError:
            return
        await show(query, text, keyboard, answered=True)


# --- activities ----------------------------------------------------------------------------


async def ask_log(
    query: CallbackQuery,
    callback_data: LogCb,
    user: User,
    contacts: ContactService,
    state: FSMContext,
) -> None:
    if callback_data.kind not in ("note", "call", "task"):
        await query.answer(_("Unknown action."), show_alert=True)
        return
    details = await contact_or_alert(query, contacts, user, callback_data.id)
    if details is None:
        return
    await state.set_state(Ask.log_text)
    await state.update_data(id=callback_data.id, kind=callback_data.kind)
    prompts = {
        "note": _("Write the note for <b>{name}</b>."),
        "call": _("How did the call with <b>{name}</b> go?"),
        "task": _("What is to be done for <b>{name}</b>?"),
    }
    await query.answer()
    assert query.message is not None
    await query.message.answer(
        prompts[callback_data.kind].format(name=render.e(details.contact.label())),
        reply_markup=render.cancel_keyboard(Ask, callback_data.id),
    )


async def log_text(
    message: Message, user: User, contacts: ContactService, state: FSMContext, zone: ZoneInfo
) -> None:
    data = await state.get_data()
    if data["kind"] == "task":
        await state.set_state(Ask.task_due)
        await state.update_data(text=message.text)
        await message.answer(
            _("When is it due? E.g. tomorrow, 25/12, 25/12 14:30 or +3 (days)."),
            reply_markup=render.cancel_keyboard(Ask, data["id"]),
        )
        return
    kind = ActivityKind(data["kind"])
    if await _log(message, user, contacts, zone, data["id"], kind, message.text or "", None):
        await state.clear()  # once answered, as for a typed reason


async def task_due(
    message: Message, user: User, contacts: ContactService, state: FSMContext, zone: ZoneInfo
) -> None:
    data = await state.get_data()
    due = parse_due(message.text or "", datetime.now(zone))
    if due is None:
        await message.answer(_("I could not read that date. Try tomorrow, 25/12 or +3."))
        return
    if await _log(message, user, contacts, zone, data["id"], ActivityKind.TASK, data["text"], due):
        await state.clear()


async def _log(
    message: Message,
    user: User,
    contacts: ContactService,
    zone: ZoneInfo,
    contact_id: int,
    kind: ActivityKind,
    text: str,
    due: datetime | None,
) -> bool:
    """Whether the question is settled: the entry saved, or refused for good."""
    try:
        card = await contacts.log_from_card(user, contact_id, kind, text, due_at=due)
    except InvalidInput as error:
        await _ask_again(message, error, contact_id)
        return False
    except DomainError as error:
        await message.answer(refusal(error))
        return True
    await message.answer(_("{kind} saved.").format(kind=ACTIVITY[kind.value]))
    shown, keyboard = _rendered(card, user, zone)
    await message.answer(shown, reply_markup=keyboard)
    return True


async def _ask_again(message: Message, error: DomainError, contact_id: int) -> None:
    await message.answer(
        refusal_asking_again(error),
        reply_markup=render.cancel_keyboard(Ask, contact_id),
    )


# --- reassigning and companies --------------------------------------------------------------


async def reassign(
    query: CallbackQuery,
    callback_data: OwnerCb,
    user: User,
    contacts: ContactService,
    zone: ZoneInfo,
) -> None:
    if callback_data.owner == 0:
        try:
            details = await contacts.get(user, callback_data.id)
            owners = await contacts.owners_for(user)
        except DomainError as error:
            await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
            return
        text = _("Reassign <b>{name}</b> to whom?").format(name=render.e(details.contact.label()))
        await show(
            query, text, render.owners_keyboard(callback_data.id, callback_data.v, owners[:40])
        )
        return
    try:
        await contacts.reassign(
            user, callback_data.id, callback_data.owner, expected_version=callback_data.v
        )
    except DomainError as error:
        await refused_on_card(query, error, contacts, user, callback_data.id, zone)
        return
    await query.answer(_("Reassigned."))
    text, keyboard = await _card(contacts, user, callback_data.id, zone)
    await show(query, text, keyboard, answered=True)


async def company(
    query: CallbackQuery, callback_data: CompanyCb, user: User, contacts: ContactService
) -> None:
    try:
        card = await contacts.company(user, callback_data.id)
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return
    await query.answer()
    assert query.message is not None
    await query.message.answer(
        render.company_text(card),
        reply_markup=render.list_keyboard(
            card.contacts[:20], list_name="co", page=0, more=False, with_owner=True
        ),
    )


async def cancel_button(
    query: CallbackQuery,
    callback_data: CancelCb,
    user: User,
    contacts: ContactService,
    state: FSMContext,
    zone: ZoneInfo,
) -> None:
    asked = await state.get_state()
    data = await state.get_data()
    if (
        asked is None
        or asked.split(":")[0] != callback_data.flow
        or (callback_data.id and data.get("id", callback_data.id) != callback_data.id)
    ):
        # An old question's button: what is being asked now (if anything) stays asked.
        await query.answer(_("That question was answered or closed already."), show_alert=True)
        if isinstance(query.message, Message):
            with contextlib.suppress(TelegramBadRequest):  # gone, or not the bot's message
                await query.message.edit_reply_markup(reply_markup=None)
        return
    await state.clear()
    await query.answer(_("Cancelled."))
    if callback_data.id:
        try:
            text, keyboard = await _card(contacts, user, callback_data.id, zone)
        except DomainError:
            return
        await show(query, text, keyboard, answered=True)
    else:
        await show(query, _("Cancelled."), None, answered=True)


# --- shared --------------------------------------------------------------------------------


async def contact_or_alert(
    query: CallbackQuery, contacts: ContactService, user: User, contact_id: int
) -> ContactDetails | None:
    """The contact a button names, if the person may see it; else they are told why."""
    try:
        return await contacts.get(user, contact_id)
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return None


async def _card(
    contacts: ContactService,
    user: User,
    contact_id: int,
    zone: ZoneInfo,
    *,
    kind: str = "",
    undo: UndoCb | None = None,
) -> tuple[str, InlineKeyboardMarkup]:
    card = await contacts.card(user, contact_id)
    if not kind:
        return _rendered(card, user, zone, undo)
    timeline = (await contacts.timeline(user, contact_id, [kind]))[:10]
    people = await contacts.people_named_in(card, timeline)
    text = _card_text(card, people, zone, timeline, str(ACTIVITY[kind]))
    return text, render.card_keyboard(card, user, undo)


def _rendered(
    card: ContactCard, user: User, zone: ZoneInfo, undo: UndoCb | None = None
) -> tuple[str, InlineKeyboardMarkup]:
    return _card_text(card, card.people, zone), render.card_keyboard(card, user, undo)


def _card_text(
    card: ContactCard,
    people: dict[int, User],
    zone: ZoneInfo,
    timeline: list[TimelineEntry] | None = None,
    heading: str | None = None,
) -> str:
    return render.card_text(
        card,
        people,
        zone=zone,
        now=utcnow(),
        language=get_i18n().current_locale,
        timeline=timeline,
        heading=heading,
    )


async def show_card(
    query: CallbackQuery,
    contacts: ContactService,
    user: User,
    contact_id: int,
    zone: ZoneInfo,
    *,
    answered: bool = False,
) -> None:
    """Turn the message the button is on into the contact's fresh card."""
    text, keyboard = await _card(contacts, user, contact_id, zone)
    await show(query, text, keyboard, answered=answered)


async def send_card(
    message: Message,
    contacts: ContactService,
    user: User,
    contact_id: int,
    zone: ZoneInfo,
    undo: UndoCb | None = None,
) -> None:
    try:
        text, keyboard = await _card(contacts, user, contact_id, zone, undo=undo)
    except DomainError as error:
        await message.answer(refusal(error))
        return
    await message.answer(text, reply_markup=keyboard)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(find_command, Command("find"))
    router.message.register(my_leads, Command("my"))
    router.message.register(idle_leads, Command("idle"))
    router.message.register(typed_reason, StateFilter(Ask.lost_reason, Ask.reopen_reason), F.text)
    router.message.register(log_text, StateFilter(Ask.log_text), F.text)
    router.message.register(task_due, StateFilter(Ask.task_due), F.text)
    router.message.register(plain_text, StateFilter(None), F.text, ~F.text.startswith("/"))
    return router


def build_button_router() -> Router:
    """The buttons of cards and searches, tried first: they are most of the taps, and each is
    known by a prefix of its own."""
    router = Router(name=f"{__name__}.buttons")
    router.callback_query.register(open_card, CardCb.filter())
    router.callback_query.register(show_stages, StagesCb.filter())
    router.callback_query.register(choose_stage, MoveCb.filter())
    router.callback_query.register(lost_reason_button, LostCb.filter())
    router.callback_query.register(undo, UndoCb.filter())
    router.callback_query.register(ask_log, LogCb.filter())
    router.callback_query.register(reassign, OwnerCb.filter())
    router.callback_query.register(company, CompanyCb.filter())
    router.callback_query.register(turn_page, PageCb.filter())
    router.callback_query.register(cancel_button, CancelCb.filter())
    return router
