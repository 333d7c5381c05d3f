"""/stages (admins): the stage list with contact counts; add, rename, reorder, recategorize and
delete (with a target, or no stage), each behind a confirmation that states its effect."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from domain.errors import DomainError, DuplicateStageName, InvalidInput, StageNotFound
from domain.model import Category, Role, Stage, User
from domain.services.stages import StageService, StageSummary
from domain.transitions import Policy, is_other
from handlers import render
from handlers.callbacks import StageAdminCb
from handlers.keys import Keys
from handlers.replies import show
from handlers.texts import CATEGORY, explain, reason_label, refusal, refusal_asking_again

IDLE_CHOICES = (3, 7, 14, 30, 60, 90)


class StageInput(StatesGroup):
    new_name = State()
    rename = State()


async def list_stages(message: Message, user: User, stages: StageService) -> None:
    if user.role is not Role.ADMIN:
        await message.answer(_("Only admins change the stages."))
        return
    text, keyboard = await _overview(stages)
    await message.answer(text, reply_markup=keyboard)


async def _overview(stages: StageService) -> tuple[str, InlineKeyboardMarkup]:
    summaries = await stages.summaries()
    lines = [_("<b>Stages</b> (contacts in each):")]
    keys = Keys()
    for category in Category:
        group = [s for s in summaries if s.stage.category is category]
        if group:
            lines.append(f"\n<i>{CATEGORY[category]}</i>")
        for summary in group:
            lines.append(
                f"  {summary.stage.position}. {render.e(summary.stage.name)} — {summary.contacts}"
            )
            assert summary.stage.id is not None
            keys.button(
                text=f"{render.CATEGORY_MARK[category]} {summary.stage.name} ({summary.contacts})",
                callback_data=StageAdminCb(id=summary.stage.id, act="view"),
            )
    without = await stages.contacts_without_stage()
    if without:
        lines.append("\n" + _("No stage: {count}").format(count=without))
    if not any(s.stage.category is Category.WON for s in summaries):
        lines.append("\n" + _("No stage is won yet, so reports cannot count conversions."))
    keys.button(text="➕ " + _("Add a stage"), callback_data=StageAdminCb(act="add"))
    keys.adjust(2)
    return render.fit(lines), keys.as_markup()


async def act(
    query: CallbackQuery,
    callback_data: StageAdminCb,
    user: User,
    stages: StageService,
    state: FSMContext,
    policy: Policy,
) -> None:
    if user.role is not Role.ADMIN:
        await query.answer(_("Only admins change the stages."), show_alert=True)
        return
    try:
        await _act(query, callback_data, user, stages, state, policy)
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return


async def _act(
    query: CallbackQuery,
    data: StageAdminCb,
    user: User,
    stages: StageService,
    state: FSMContext,
    policy: Policy,
) -> None:
    if data.act == "list":
        await show(query, *await _overview(stages))
        return
    if data.act == "add":
        await state.set_state(StageInput.new_name)
        await query.answer()
        assert isinstance(query.message, Message)
        await query.message.answer(
            _("Name of the new stage?"), reply_markup=render.cancel_keyboard(StageInput)
        )
        return
    summary = await _summary(stages, data.id)
    stage = summary.stage
    if data.act == "view":
        await show(query, _stage_text(summary), _stage_keyboard(summary))
    elif data.act in ("up", "down"):
        position = stage.position + (-1 if data.act == "up" else 1)
        await stages.move(user, stage.name, max(1, position))
        await show(query, *await _overview(stages))
    elif data.act == "cat" and data.arg:
        category = Category(data.arg)
        confirm = Keys()
        confirm.button(
            text="✅ " + _("Confirm"),
            callback_data=StageAdminCb(id=data.id, act="catok", arg=data.arg),
        )
        confirm.button(text="↩ " + _("Back"), callback_data=StageAdminCb(id=data.id, act="view"))
        text = _(
            "Make <b>{stage}</b> {category}? Its {count} contact(s) and every report, "
            "past periods included, follow at once."
        ).format(stage=render.e(stage.name), category=CATEGORY[category], count=summary.contacts)
        await show(query, text, confirm.as_markup())
    elif data.act == "catok":
        await stages.recategorize(user, stage.name, Category(data.arg))
        await query.answer(_("Done."))
        await show(
            query,
            _stage_text(await _summary(stages, data.id)),
            _stage_keyboard(await _summary(stages, data.id)),
            answered=True,
        )
    elif data.act == "idle" and stage.category is Category.OPEN:
        keys = Keys()
        for days in IDLE_CHOICES:
            keys.button(
                text=_("{days} days").format(days=days),
                callback_data=StageAdminCb(id=data.id, act="idleset", arg=str(days)),
            )
        keys.button(
            text=_("The default"), callback_data=StageAdminCb(id=data.id, act="idleset", arg="0")
        )
        keys.button(text="↩ " + _("Back"), callback_data=StageAdminCb(id=data.id, act="view"))
        keys.adjust(3)
        text = _(
            "After how many days untouched is a lead in <b>{stage}</b> idle? Its agent hears "
            "of it in the morning."
        ).format(stage=render.e(stage.name))
        await show(query, text, keys.as_markup())
    elif data.act == "idleset" and data.arg.isdigit():
        await stages.set_idle_days(user, stage.name, int(data.arg) or None)
        summary = await _summary(stages, data.id)
        await show(query, _stage_text(summary), _stage_keyboard(summary))
    elif data.act == "rename":
        await state.set_state(StageInput.rename)
        await state.update_data(stage=data.id)
        await query.answer()
        assert isinstance(query.message, Message)
        await query.message.answer(
            _("New name for <b>{stage}</b>?").format(stage=render.e(stage.name)),
            reply_markup=render.cancel_keyboard(StageInput),
        )
    elif data.act == "delete" and not data.arg:
        await show(
            query,
            _("Where do the {count} contact(s) of <b>{stage}</b> go?").format(
                count=summary.contacts, stage=render.e(stage.name)
            ),
            await _targets(stages, data.id),
        )
    elif data.act == "delete":
        await _confirm_delete(query, stages, summary, data.arg, policy)
    elif data.act == "deleteok":
        await _delete(query, data, user, stages, stage, policy)
    else:
        await query.answer(_("Unknown action."), show_alert=True)


async def _delete(
    query: CallbackQuery,
    data: StageAdminCb,
    user: User,
    stages: StageService,
    stage: Stage,
    policy: Policy,
) -> None:
    """Delete a confirmed stage. A refusal is the button's answer; once the rules agree, the
    message says how many contacts are moving while they move (one statement, however many:
    there is no count to show along the way), then what was done."""
    target_name = None
    if data.arg != "none":
        target_name = (await stages.get(int(data.arg))).name
    reason = policy.lost_reasons[data.r] if 0 <= data.r < len(policy.lost_reasons) else None
    no_stage = data.arg == "none"
    count = await stages.plan_delete(
        user, stage.name, reassign_to=target_name, no_stage=no_stage, reason=reason
    )
    await query.answer()
    if count:
        moving = _("Moving {count} contact(s) from {stage} to {target}…").format(
            count=render.number(count),
            stage=render.e(stage.name),
            target=render.e(target_name) if target_name else _("no stage"),
        )
        await show(query, moving, None, answered=True)
    try:
        result = await stages.delete(
            user, stage.name, reassign_to=target_name, no_stage=no_stage, reason=reason
        )
    except DomainError as error:  # changed since the confirmation
        text, keyboard = await _overview(stages)
        await show(query, refusal(error) + "\n\n" + text, keyboard, answered=True)
        return
    text, keyboard = await _overview(stages)
    done = _("Deleted {stage}; {count} contact(s) moved. /undo can bring it back.").format(
        stage=render.e(stage.name), count=render.number(result.moved)
    )
    await show(query, done + "\n\n" + text, keyboard, answered=True)


async def _confirm_delete(
    query: CallbackQuery, stages: StageService, summary: StageSummary, target: str, policy: Policy
) -> None:
    stage = summary.stage
    assert stage.id is not None
    keys = Keys()
    if target == "none":
        where = _("no stage")
        lost = False
    else:
        target_stage = await stages.get(int(target))
        where = target_stage.name
        lost = target_stage.category is Category.LOST and summary.contacts > 0
    text = _("{count} contact(s) will move to {target}, and {stage} will be deleted.").format(
        count=summary.contacts, target=render.e(where), stage=render.e(stage.name)
    )
    if lost:
        text += "\n" + _("They become lost: choose the reason to record.")
        for number, listed in enumerate(policy.lost_reasons):
            if not is_other(listed):
                keys.button(
                    text=reason_label(listed),
                    callback_data=StageAdminCb(id=stage.id, act="deleteok", arg=target, r=number),
                )
    else:
        keys.button(
            text="✅ " + _("Confirm"),
            callback_data=StageAdminCb(id=stage.id, act="deleteok", arg=target),
        )
    keys.button(text="↩ " + _("Back"), callback_data=StageAdminCb(id=stage.id, act="view"))
    keys.adjust(2)
    await show(query, text, keys.as_markup())


async def _targets(stages: StageService, stage_id: int) -> InlineKeyboardMarkup:
    keys = Keys()
    for stage in await stages.ordered():
        if stage.id != stage_id:
            keys.button(
                text=f"{render.CATEGORY_MARK[stage.category]} {stage.name}",
                callback_data=StageAdminCb(id=stage_id, act="delete", arg=str(stage.id)),
            )
    keys.button(
        text=_("No stage"), callback_data=StageAdminCb(id=stage_id, act="delete", arg="none")
    )
    keys.button(text="↩ " + _("Back"), callback_data=StageAdminCb(id=stage_id, act="view"))
    keys.adjust(2)
    return keys.as_markup()


async def _summary(stages: StageService, stage_id: int) -> StageSummary:
    for summary in await stages.summaries():
        if summary.stage.id == stage_id:
            return summary
    raise StageNotFound(f"#{stage_id}")


def _stage_text(summary: StageSummary) -> str:
    stage = summary.stage
    text = _("<b>{stage}</b> — {category}, number {position}; {count} contact(s).").format(
        stage=render.e(stage.name),
        category=CATEGORY[stage.category],
        position=stage.position,
        count=summary.contacts,
    )
    if stage.category is Category.OPEN and stage.idle_days:
        text += "\n" + _("A lead here is idle after {days} days untouched.").format(
            days=stage.idle_days
        )
    return text


def _stage_keyboard(summary: StageSummary) -> InlineKeyboardMarkup:
    stage = summary.stage
    assert stage.id is not None
    keys = Keys()
    keys.button(text="⬆", callback_data=StageAdminCb(id=stage.id, act="up"))
    keys.button(text="⬇", callback_data=StageAdminCb(id=stage.id, act="down"))
    keys.button(text="✏️ " + _("Rename"), callback_data=StageAdminCb(id=stage.id, act="rename"))
    for category in Category:
        if category is not stage.category:
            keys.button(
                text=_("Make {category}").format(category=CATEGORY[category]),
                callback_data=StageAdminCb(id=stage.id, act="cat", arg=category.value),
            )
    if stage.category is Category.OPEN:
        keys.button(
            text="⏳ " + _("Idle after…"), callback_data=StageAdminCb(id=stage.id, act="idle")
        )
    keys.button(text="🗑 " + _("Delete"), callback_data=StageAdminCb(id=stage.id, act="delete"))
    keys.button(text="↩ " + _("Back"), callback_data=StageAdminCb(act="list"))
    keys.adjust(3, 2, 2)
    return keys.as_markup()


async def typed_new_name(message: Message, state: FSMContext) -> None:
    await state.update_data(name=message.text)
    keys = Keys()
    for category in Category:
        keys.button(
            text=str(CATEGORY[category]),
            callback_data=StageAdminCb(act="addcat", arg=category.value),
        )
    keys.button(text="✖️ " + _("Cancel"), callback_data=render.cancel_of(StageInput))
    await message.answer(_("Is it open, won or lost?"), reply_markup=keys.as_markup())


async def chose_new_category(
    query: CallbackQuery,
    callback_data: StageAdminCb,
    user: User,
    stages: StageService,
    state: FSMContext,
) -> None:
    data = await state.get_data()
    await state.clear()
    if user.role is not Role.ADMIN or "name" not in data:
        await query.answer(_("Start again with /stages."), show_alert=True)
        return
    try:
        stage = await stages.add(user, data["name"], Category(callback_data.arg))
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return
    await query.answer(_("Added."))
    text, keyboard = await _overview(stages)
    await show(
        query,
        _("Added {stage}.").format(stage=render.e(stage.name)) + "\n\n" + text,
        keyboard,
        answered=True,
    )


async def typed_rename(
    message: Message, user: User, stages: StageService, state: FSMContext
) -> None:
    data = await state.get_data()
    try:
        old = await stages.get(data["stage"])
        stage = await stages.rename(user, old.name, message.text or "")
    except (InvalidInput, DuplicateStageName) as error:  # the question stays open
        await message.answer(
            refusal_asking_again(error),
            reply_markup=render.cancel_keyboard(StageInput),
        )
        return
    except DomainError as error:
        await state.clear()
        await message.answer(refusal(error))
        return
    text, keyboard = await _overview(stages)
    await message.answer(
        _("Renamed to {stage}.").format(stage=render.e(stage.name)) + "\n\n" + text,
        reply_markup=keyboard,
    )
    await state.clear()


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(list_stages, Command("stages"))
    router.message.register(typed_new_name, StateFilter(StageInput.new_name), F.text)
    router.message.register(typed_rename, StateFilter(StageInput.rename), F.text)
    router.callback_query.register(chose_new_category, StageAdminCb.filter(F.act == "addcat"))
    router.callback_query.register(act, StageAdminCb.filter())
    return router
