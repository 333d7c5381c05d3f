"""Who gets in: /start greets people who have access and turns strangers' /start into a request
that every admin can approve (as agent or manager, in a team) or reject; /lang."""

from __future__ import annotations

import hashlib
import logging

from aiogram import Bot, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from domain.errors import DomainError
from domain.model import AccessRequest, Role, User
from domain.services.users import UserService
from handlers import render
from handlers.callbacks import AccessCb, LangCb
from handlers.commands import publish_commands
from handlers.i18n import LANGUAGES, language_of
from handlers.keys import Keys
from handlers.texts import ROLE, explain, help_text, refusal

log = logging.getLogger(__name__)


async def start(
    message: Message, user: User | None, users: UserService, bot: Bot, i18n: I18n
) -> None:
    if user is not None:
        await message.answer(
            _("Hello, {name}! 👋").format(name=render.e(user.name)) + "\n\n" + help_text(user.role)
        )
        return
    sender = message.from_user
    assert sender is not None
    try:
        request, new = await users.request_access(
            sender.id, sender.full_name, sender.username, sender.language_code
        )
    except DomainError as error:
        await message.answer(refusal(error))
        return
    if not new:
        await message.answer(_("Your request is waiting for an admin. You will hear back here."))
        return
    await message.answer(
        _("Welcome to Stagekeeper! I have asked the admins to let you in; you will hear back here.")
    )
    await _tell_admins(bot, users, request, i18n)


async def _tell_admins(bot: Bot, users: UserService, request: AccessRequest, i18n: I18n) -> None:
    admins = [
        u for u in await users.everyone() if u.role is Role.ADMIN and u.active and u.telegram_id
    ]
    for admin in admins:
        assert admin.telegram_id is not None
        with i18n.use_locale(language_of(admin, None, i18n.default_locale)):
            try:
                await bot.send_message(
                    admin.telegram_id, _request_text(request), reply_markup=_role_keyboard(request)
                )
            except TelegramAPIError as error:  # an admin who never started the bot, or left
                log.warning("could not tell admin %s: %s", admin.telegram_id, error)


def _request_text(request: AccessRequest) -> str:
    who = render.e(request.name)
    if request.username:
        who += f" (@{render.e(request.username)})"
    return _("🔑 {who}, Telegram id {id}, asks for access.").format(who=who, id=request.telegram_id)


def _role_keyboard(request: AccessRequest) -> InlineKeyboardMarkup:
    assert request.id is not None
    keys = Keys()
    keys.button(text=_("✅ Agent"), callback_data=AccessCb(req=request.id, act="agent"))
    keys.button(text=_("✅ Manager"), callback_data=AccessCb(req=request.id, act="manager"))
    keys.button(text=_("❌ Reject"), callback_data=AccessCb(req=request.id, act="reject"))
    keys.adjust(2, 1)
    return keys.as_markup()


def team_key(team: str) -> str:
    return hashlib.sha1(team.encode()).hexdigest()[:8]


async def decide(
    query: CallbackQuery,
    callback_data: AccessCb,
    user: User,
    users: UserService,
    bot: Bot,
    i18n: I18n,
) -> None:
    if user.role is not Role.ADMIN:
        await query.answer(_("Only admins decide on access."), show_alert=True)
        return
    if callback_data.act not in ("agent", "manager", "reject"):
        await query.answer(_("Unknown action."), show_alert=True)
        return
    teams = await users.teams()
    if callback_data.act != "reject" and not callback_data.team:
        await _ask_team(query, callback_data, teams)
        return
    team = None
    if callback_data.team and callback_data.team != "-":
        team = next((t for t in teams if team_key(t) == callback_data.team), None)
        if team is None:
            await query.answer(_("That team no longer exists; choose again."), show_alert=True)
            await _ask_team(query, AccessCb(req=callback_data.req, act=callback_data.act), teams)
            return
    approve = callback_data.act != "reject"
    role = Role.MANAGER if callback_data.act == "manager" else Role.AGENT
    try:
        decision = await users.decide(
            user, callback_data.req, approve=approve, role=role, team=team
        )
    except DomainError as error:
        await query.answer(explain(error, i18n.current_locale), show_alert=True)
        return
    request = decision.request
    if decision.user is not None:
        approved = (
            _("Approved as {role} in team {team} by {admin}.")
            if team
            else _("Approved as {role} by {admin}.")
        )
        outcome = approved.format(
            role=ROLE[role], team=render.e(team or ""), admin=render.e(user.name)
        )
    else:
        outcome = _("Rejected by {admin}.").format(admin=render.e(user.name))
    await query.answer()
    if query.message is not None and hasattr(query.message, "edit_text"):
        await query.message.edit_text(_request_text(request) + "\n" + outcome)
    await _tell_requester(bot, request, decision.user, i18n)


async def _ask_team(query: CallbackQuery, callback_data: AccessCb, teams: list[str]) -> None:
    keys = Keys()
    for team in teams[:30]:
        keys.button(
            text=team,
            callback_data=AccessCb(
                req=callback_data.req, act=callback_data.act, team=team_key(team)
            ),
        )
    keys.button(
        text=_("No team"),
        callback_data=AccessCb(req=callback_data.req, act=callback_data.act, team="-"),
    )
    keys.adjust(2)
    await query.answer()
    if query.message is not None and hasattr(query.message, "edit_reply_markup"):
        await query.message.edit_reply_markup(reply_markup=keys.as_markup())


async def _tell_requester(bot: Bot, request: AccessRequest, user: User | None, i18n: I18n) -> None:
    with i18n.use_locale(language_of(user, request.language, i18n.default_locale)):
        if user is None:
            text = _("Sorry, an admin declined your request for access.")
        else:
            text = (
                _("You are in, as {role}! 🎉").format(role=ROLE[user.role])
                + "\n\n"
                + help_text(user.role)
            )
        try:
            await bot.send_message(request.telegram_id, text)
            if user is not None:
                await publish_commands(bot, [user], i18n)
        except TelegramAPIError as error:
            log.warning("could not tell %s the outcome: %s", request.telegram_id, error)


async def help_command(message: Message, user: User) -> None:
    await message.answer(help_text(user.role))


async def choose_language(message: Message) -> None:
    keys = Keys()
    for code, name in LANGUAGES.items():
        keys.button(text=name, callback_data=LangCb(code=code))
    await message.answer(_("Choose your language:"), reply_markup=keys.as_markup())


async def set_language(
    query: CallbackQuery,
    callback_data: LangCb,
    user: User,
    users: UserService,
    bot: Bot,
    i18n: I18n,
) -> None:
    if callback_data.code not in LANGUAGES:
        await query.answer(_("Unknown language."), show_alert=True)
        return
    updated = await users.set_language(user, callback_data.code)
    with i18n.use_locale(callback_data.code):
        await query.answer()
        if query.message is not None and hasattr(query.message, "edit_text"):
            await query.message.edit_text(
                _("I will speak English with you.")
                if callback_data.code == "en"
                else _("From now on I speak your language.")
            )
        await publish_commands(bot, [updated], i18n)


async def cancel_command(message: Message, state: FSMContext) -> None:
    """Stops whatever is being asked (this router goes first, before any question's own)."""
    had = await state.get_state()
    await state.clear()
    await message.answer(_("Cancelled.") if had else _("There was nothing to cancel."))


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(cancel_command, Command("cancel"))
    router.message.register(start, CommandStart())
    router.message.register(help_command, Command("help"))
    router.message.register(choose_language, Command("lang"))
    router.callback_query.register(decide, AccessCb.filter())
    router.callback_query.register(set_language, LangCb.filter())
    return router
