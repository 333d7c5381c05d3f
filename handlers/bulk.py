"""/move <search> (or a saved view's "Move all" button): move every contact a search matches to
one stage, after a confirmation that says how many; /undo: list recent bulk operations and undo
one."""

from __future__ import annotations

import secrets
from zoneinfo import ZoneInfo

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from domain.errors import DomainError
from domain.model import Category, User
from domain.services.operations import OperationService, Selection, UndoNeedsConfirmation
from domain.services.stages import StageService
from domain.transitions import Policy, is_other
from handlers import render
from handlers.callbacks import BulkCb, UndoOpCb
from handlers.keys import Keys
from handlers.replies import show
from handlers.texts import explain, reason_label, refusal


async def move_command(
    message: Message,
    command: CommandObject,
    user: User,
    operations: OperationService,
    stages: StageService,
    state: FSMContext,
) -> None:
    query = (command.args or "").strip()
    if not query:
        await message.answer(_("Which contacts? For example: /move hoi cho 2025"))
        return
    text, keys = await offer_targets(Selection(query=query), user, operations, stages, state)
    await message.answer(text, reply_markup=keys)


async def offer_targets(
    selection: Selection,
    user: User,
    operations: OperationService,
    stages: StageService,
    state: FSMContext,
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The first step of a bulk move, for a search or a view: how many contacts, and the
    stages to choose from. The selection waits in the person's state for the choice (in Redis
    when several workers serve the bot), named by an id in the buttons: a button of an older
    selection is refused rather than applied to this one."""
    label = render.e(selection.query or "")
    try:
        plan = await operations.plan_bulk_move(user, selection)
    except DomainError as error:
        return refusal(error), None
    if not plan.contacts:
        return _("Nothing found for “{query}”.").format(query=label), None
    selection_id = secrets.token_hex(4)
    pending = {
        "id": selection_id,
        "query": selection.query,
        "view": selection.view_id,
        "count": plan.contacts,
    }
    await state.update_data(bulk=pending)
    counts = ", ".join(f"{render.e(name)}: {count}" for name, count in plan.by_stage.items())
    keys = Keys()
    for stage in await stages.ordered():
        assert stage.id is not None
        keys.button(
            text=f"{render.CATEGORY_MARK[stage.category]} {stage.name}",
            callback_data=BulkCb(sel=selection_id, stage=stage.id),
        )
    keys.adjust(2)
    text = (
        _("{count} contact(s) match “{query}” ({counts}). Move them to which stage?")
        if selection.query
        else _("{count} contact(s) are in this view ({counts}). Move them to which stage?")
    )
    return text.format(count=plan.contacts, query=label, counts=counts), keys.as_markup()


async def move_chosen(
    query: CallbackQuery,
    callback_data: BulkCb,
    user: User,
    operations: OperationService,
    stages: StageService,
    state: FSMContext,
    policy: Policy,
) -> None:
    pending = (await state.get_data()).get("bulk")
    if not isinstance(pending, dict) or pending.get("id") != callback_data.sel:
        await query.answer(_("This list is out of date; ask again."), show_alert=True)
        return
    selection = Selection(query=pending.get("query"), view_id=pending.get("view"))
    confirmed = int(pending["count"])
    try:
        target = await stages.get(callback_data.stage)
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return
    if not callback_data.go:
        keys = Keys()
        text = _("Move {count} contact(s) to {stage}?").format(
            count=confirmed, stage=render.e(target.name)
        )
        if target.category is Category.LOST:
            text += "\n" + _("They become lost: choose the reason to record.")
            for number, listed in enumerate(policy.lost_reasons):
                if not is_other(listed):
                    keys.button(
                        text=reason_label(listed),
                        callback_data=BulkCb(
                            sel=callback_data.sel, stage=callback_data.stage, go=1, r=number
                        ),
                    )
        else:
            keys.button(
                text="✅ " + _("Confirm"),
                callback_data=BulkCb(sel=callback_data.sel, stage=callback_data.stage, go=1),
            )
        keys.adjust(2)
        await show(query, text, keys.as_markup())
        return
    reason = (
        policy.lost_reasons[callback_data.r]
        if 0 <= callback_data.r < len(policy.lost_reasons)
        else None
    )
    await query.answer()
    # One set-based statement per starting stage: no count along the way, so the message says
    # what is moving until it says what moved.
    moving = _("Moving {count} contact(s) to {stage}…").format(
        count=render.number(confirmed), stage=render.e(target.name)
    )
    await show(query, moving, None, answered=True)
    try:
        operation = await operations.bulk_move(
            user, selection, target.name, reason=reason, confirmed=confirmed
        )
    except DomainError as error:
        await show(query, refusal(error), None, answered=True)
        return
    await state.update_data(bulk=None)
    assert operation.id is not None
    keys = Keys()
    keys.button(text="↩ " + _("Undo"), callback_data=UndoOpCb(id=operation.id))
    await show(
        query,
        _("Moved {count} contact(s) to {stage} (operation #{id}).").format(
            count=render.number(operation.contacts), stage=render.e(target.name), id=operation.id
        ),
        keys.as_markup(),
        answered=True,
    )


async def undo_command(
    message: Message, user: User, operations: OperationService, zone: ZoneInfo
) -> None:
    recent = [op for op in await operations.recent(user) if op.undone_at is None]
    if not recent:
        await message.answer(_("There is no bulk operation to undo."))
        return
    keys = Keys()
    for operation in recent:
        assert operation.id is not None
        keys.button(
            text=render.short(
                f"#{operation.id} {render.when(operation.created_at, zone)} "
                f"{operation.description}",
                60,
            ),
            callback_data=UndoOpCb(id=operation.id),
        )
    keys.adjust(1)
    await message.answer(_("Which operation should I undo?"), reply_markup=keys.as_markup())


async def undo_chosen(
    query: CallbackQuery, callback_data: UndoOpCb, user: User, operations: OperationService
) -> None:
    try:
        result = await operations.undo(
            user, callback_data.id, confirm_changed=bool(callback_data.force)
        )
    except UndoNeedsConfirmation as conflict:
        keys = Keys()
        keys.button(
            text=_("Revert the others"), callback_data=UndoOpCb(id=callback_data.id, force=1)
        )
        text = _("{count} contact(s) changed since: {names}. They stay as they are.").format(
            count=len(conflict.changed), names=render.e(", ".join(conflict.names))
        )
        await show(query, text, keys.as_markup())
        return
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return
    text = _("Undone: {count} contact(s) are back as they were.").format(count=result.reverted)
    if result.kept:
        text += " " + _("{count} changed since and were left alone.").format(count=result.kept)
    await show(query, text, None)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(move_command, Command("move"))
    router.message.register(undo_command, Command("undo"))
    router.callback_query.register(move_chosen, BulkCb.filter())
    router.callback_query.register(undo_chosen, UndoOpCb.filter())
    return router
