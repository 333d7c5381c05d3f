"""/views: saved views (smart lists). `/views` lists them; `/views save NAME: stage=SQL idle=7`
saves one (`shared` at the end shares it, for managers and admins); a view opens as a list."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardButton, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from domain.errors import DomainError
from domain.model import User
from domain.services.exports import ExportService
from domain.services.operations import OperationService, Selection
from domain.services.stages import StageService
from domain.services.views import ViewService
from domain.views import KEYS, ViewFilter
from handlers import render
from handlers.bulk import offer_targets
from handlers.callbacks import ViewCb
from handlers.export import send_export
from handlers.keys import Keys
from handlers.replies import show
from handlers.texts import explain, refusal


async def views_command(
    message: Message, command: CommandObject, user: User, views: ViewService
) -> None:
    args = (command.args or "").strip()
    if args.lower().startswith("save "):
        await _save(message, args[5:], user, views)
        return
    saved = await views.visible(user)
    keys = Keys()
    for view in saved[:40]:
        assert view.id is not None
        mark = "👥 " if view.shared else ""
        keys.button(text=render.short(mark + view.name, 40), callback_data=ViewCb(id=view.id))
    keys.adjust(2)
    usage = _("Save one: /views save <i>name</i>: stage=SQL idle=7 (keys: {keys})").format(
        keys=render.e(", ".join(KEYS))
    )
    text = (_("Your views:") if saved else _("You have no saved views yet.")) + "\n" + usage
    await message.answer(text, reply_markup=keys.as_markup() if saved else None)


async def _save(message: Message, text: str, user: User, views: ViewService) -> None:
    name, colon, rest = text.partition(":")
    if not colon:
        await message.answer(_("Write it as /views save <i>name</i>: <i>filter</i>"))
        return
    words = rest.split()
    shared = bool(words) and words[-1].lower() == "shared"
    if shared:
        words = words[:-1]
    try:
        view = await views.save(user, name, " ".join(words), shared=shared)
    except DomainError as error:
        await message.answer(refusal(error))
        return
    assert view.id is not None
    keys = Keys()
    keys.button(text=_("Open"), callback_data=ViewCb(id=view.id))
    await message.answer(
        _("Saved {name}: {filter}").format(
            name=render.e(view.name), filter=render.e(ViewFilter.from_json(view.filter).describe())
        ),
        reply_markup=keys.as_markup(),
    )


async def open_view(
    query: CallbackQuery,
    callback_data: ViewCb,
    user: User,
    views: ViewService,
    operations: OperationService,
    stages: StageService,
    exports: ExportService,
    state: FSMContext,
    zone: ZoneInfo,
) -> None:
    if callback_data.act == "move":
        selection = Selection(view_id=callback_data.id)
        text, keyboard = await offer_targets(selection, user, operations, stages, state)
        await show(query, text, keyboard)
        return
    if callback_data.act == "csv":
        await query.answer()
        assert isinstance(query.message, Message)
        try:
            view, where = await exports.view_selection(user, callback_data.id)
        except DomainError as error:
            await query.message.answer(refusal(error))
            return
        await send_export(query.message, user, exports, where, view.name, zone)
        return
    try:
        if callback_data.act == "del":
            await views.delete(user, callback_data.id)
            await show(query, _("View deleted."), None)
            return
        page = max(0, callback_data.page)
        view, found = await views.open(
            user, callback_data.id, limit=render.PAGE_SIZE + 1, offset=page * render.PAGE_SIZE
        )
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return
    keyboard = render.list_keyboard(
        found[: render.PAGE_SIZE], list_name="view", page=0, more=False, with_owner=True
    )
    nav = []
    if page > 0:
        nav.append(
            InlineKeyboardButton(
                text="◀", callback_data=ViewCb(id=callback_data.id, page=page - 1).pack()
            )
        )
    if len(found) > render.PAGE_SIZE:
        nav.append(
            InlineKeyboardButton(
                text="▶", callback_data=ViewCb(id=callback_data.id, page=page + 1).pack()
            )
        )
    rows = [*keyboard.inline_keyboard, *([nav] if nav else [])]
    actions = [("⬇ " + _("Export"), "csv"), ("🗑 " + _("Delete view"), "del")]
    if found:
        actions.insert(0, ("🔀 " + _("Move all"), "move"))
    rows.append(
        [
            InlineKeyboardButton(
                text=label, callback_data=ViewCb(id=callback_data.id, act=act).pack()
            )
            for label, act in actions
        ]
    )
    keyboard.inline_keyboard = rows
    title = (
        f"<b>{render.e(view.name)}</b> — {render.e(ViewFilter.from_json(view.filter).describe())}"
    )
    body = title if found else title + "\n" + _("No contact matches it now.")
    await show(query, body, keyboard)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(views_command, Command("views"))
    router.callback_query.register(open_view, ViewCb.filter())
    return router
