"""/users (admins): everyone with access, their role, team and whether they are switched on."""

from __future__ import annotations

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from domain.errors import DomainError
from domain.model import Role, User
from domain.services.users import UserService
from handlers import render
from handlers.access import team_key
from handlers.callbacks import PersonCb
from handlers.commands import publish_commands
from handlers.keys import Keys
from handlers.replies import show
from handlers.texts import ROLE, explain

LIST_LIMIT = 60


async def list_people(message: Message, user: User, users: UserService) -> None:
    if user.role is not Role.ADMIN:
        await message.answer(_("Only admins manage people."))
        return
    text, keyboard = await _list(users, user)
    await message.answer(text, reply_markup=keyboard)


async def _list(users: UserService, admin: User) -> tuple[str, InlineKeyboardMarkup]:
    people = await users.everyone()
    waiting = await users.pending_requests(admin)
    keys = Keys()
    for person in people[:LIST_LIMIT]:
        assert person.id is not None
        off = "⛔ " if not person.active else ""
        team = f" · {person.team}" if person.team else ""
        keys.button(
            text=render.short(f"{off}{person.name} · {ROLE[person.role]}{team}", 60),
            callback_data=PersonCb(id=person.id, act="view"),
        )
    keys.adjust(1)
    text = _("People ({count}). Choose one to change.").format(count=len(people))
    if waiting:
        text += "\n" + _("{count} request(s) wait for a decision.").format(count=len(waiting))
    return text, keys.as_markup()


async def act(
    query: CallbackQuery,
    callback_data: PersonCb,
    user: User,
    users: UserService,
    bot: Bot,
    i18n: I18n,
) -> None:
    if user.role is not Role.ADMIN:
        await query.answer(_("Only admins manage people."), show_alert=True)
        return
    try:
        if callback_data.act == "list":
            text, keyboard = await _list(users, user)
            await show(query, text, keyboard)
            return
        person = await users.get(callback_data.id)
        if callback_data.act in ("agent", "manager"):
            person = await users.set_role(user, callback_data.id, Role(callback_data.act))
            await publish_commands(bot, [person], i18n)
        elif callback_data.act in ("off", "on"):
            person = await users.set_active(user, callback_data.id, callback_data.act == "on")
        elif callback_data.act == "team" and not callback_data.team:
            await show(query, _person_text(person), await _team_keyboard(users, person))
            return
        elif callback_data.act == "team":
            teams = {team_key(t): t for t in await users.teams()}
            if callback_data.team != "-" and callback_data.team not in teams:
                await query.answer(_("That team no longer exists; choose again."), show_alert=True)
                return
            person = await users.set_team(user, callback_data.id, teams.get(callback_data.team))
        elif callback_data.act != "view":
            await query.answer(_("Unknown action."), show_alert=True)
            return
    except DomainError as error:
        await query.answer(explain(error, i18n.current_locale), show_alert=True)
        return
    await show(query, _person_text(person), _person_keyboard(person))


def _person_text(person: User) -> str:
    lines = [
        f"👤 <b>{render.e(person.name)}</b>",
        _("Role: {role}").format(role=ROLE[person.role]),
        _("Team: {team}").format(team=render.e(person.team or "—")),
        _("Telegram id: {id}").format(id=person.telegram_id or _("not linked yet")),
        _("Access: {state}").format(state=_("on") if person.active else _("switched off")),
    ]
    return "\n".join(lines)


def _person_keyboard(person: User) -> InlineKeyboardMarkup:
    assert person.id is not None
    keys = Keys()
    if person.role is not Role.ADMIN:
        keys.button(text=_("Make agent"), callback_data=PersonCb(id=person.id, act="agent"))
        keys.button(text=_("Make manager"), callback_data=PersonCb(id=person.id, act="manager"))
    keys.button(text=_("Team…"), callback_data=PersonCb(id=person.id, act="team"))
    if person.active:
        keys.button(text=_("Switch off"), callback_data=PersonCb(id=person.id, act="off"))
    else:
        keys.button(text=_("Switch on"), callback_data=PersonCb(id=person.id, act="on"))
    keys.button(text="↩ " + _("Back"), callback_data=PersonCb(id=person.id, act="list"))
    keys.adjust(2)
    return keys.as_markup()


async def _team_keyboard(users: UserService, person: User) -> InlineKeyboardMarkup:
    assert person.id is not None
    keys = Keys()
    for team in (await users.teams())[:30]:
        keys.button(
            text=team, callback_data=PersonCb(id=person.id, act="team", team=team_key(team))
        )
    keys.button(text=_("No team"), callback_data=PersonCb(id=person.id, act="team", team="-"))
    keys.button(text="↩ " + _("Back"), callback_data=PersonCb(id=person.id, act="view"))
    keys.adjust(2)
    return keys.as_markup()


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(list_people, Command("users"))
    router.callback_query.register(act, PersonCb.filter())
    return router
