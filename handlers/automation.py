"""The HTTP API's side in chat (admins): `/rules`, the table of which stage each event moves a
contact to, edited with buttons; `/apikeys`, the keys (`/apikeys create NAME` shows a new one's
secret once), revoked behind a confirmation."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from domain.automation import REPEAT_REVENUE, TRIGGERS, Rule
from domain.errors import DomainError
from domain.model import EventKind, Role, Stage, User
from domain.services.apikeys import ApiKeyService
from domain.services.events import EventService
from domain.services.stages import StageService
from handlers import render
from handlers.callbacks import ApiKeyCb, RuleCb
from handlers.keys import Keys
from handlers.replies import show
from handlers.texts import explain, refusal

NO_CHANGE, CHOOSE, DEFAULT, TABLE = 0, -1, -2, -3


# --- /rules ---------------------------------------------------------------------------------


async def rules_command(message: Message, user: User, events: EventService) -> None:
    if user.role is not Role.ADMIN:
        await message.answer(_("Only admins change the automation rules."))
        return
    text, keyboard = await _table(events)
    await message.answer(text, reply_markup=keyboard)


def trigger_label(trigger: str) -> str:
    if trigger == EventKind.REVENUE_BOOKED.value:
        return "revenue_booked " + _("(first)")
    if trigger == REPEAT_REVENUE:
        return "revenue_booked " + _("(again)")
    return trigger


def _rule_stage(rule: Rule) -> str:
    if rule.stage is None:
        target = _("no stage change")
    elif rule.stage.archived:
        target = _("{stage} (deleted: choose another)").format(stage=render.e(rule.stage.name))
    else:
        target = f"<b>{render.e(rule.stage.name)}</b>"
    return target + (" · " + _("default") if rule.default else "")


async def _table(events: EventService) -> tuple[str, InlineKeyboardMarkup]:
    lines = [
        _("<b>Automation rules</b>: the stage each event of the HTTP API moves a contact to."),
        _(
            "Automation only moves forward and never takes a won or lost contact to another "
            "category; what it declined is on the contact's card."
        ),
        "",
    ]
    keys = Keys()
    for number, rule in enumerate(await events.rules()):
        label = trigger_label(rule.trigger)
        lines.append(f"• <code>{render.e(label)}</code> → {_rule_stage(rule)}")
        keys.button(text=label, callback_data=RuleCb(t=number))
    lines += ["", _routing_text(events), "", _("Choose an event to change its stage.")]
    keys.adjust(2)
    return render.fit(lines), keys.as_markup()


def _routing_text(events: EventService) -> str:
    routing = events.routing
    if routing.team:
        text = _("New leads go in turn to the active agents of the team {team}.").format(
            team=render.e(routing.team)
        )
    else:
        text = _("New leads go in turn to every active agent.")
    if routing.owners:
        fixed = ", ".join(f"{source} → {owner}" for source, owner in routing.owners.items())
        text += " " + _("Fixed owners by source: {owners}.").format(owners=render.e(fixed))
    return text


async def rule_button(
    query: CallbackQuery,
    callback_data: RuleCb,
    user: User,
    events: EventService,
    stages: StageService,
) -> None:
    if user.role is not Role.ADMIN:
        await query.answer(_("Only admins change the automation rules."), show_alert=True)
        return
    if not 0 <= callback_data.t < len(TRIGGERS):
        await query.answer(_("This list is out of date; ask again."), show_alert=True)
        return
    trigger = TRIGGERS[callback_data.t]
    if callback_data.stage == CHOOSE:
        live = await stages.ordered()
        await show(query, _choice_text(trigger), _choices(callback_data.t, live))
        return
    try:
        if callback_data.stage == DEFAULT:
            await events.reset_rule(user, trigger)
        elif callback_data.stage != TABLE:
            stage = callback_data.stage if callback_data.stage != NO_CHANGE else None
            await events.set_rule(user, trigger, stage)
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return
    if callback_data.stage != TABLE:
        await query.answer(_("Saved."))
    text, keyboard = await _table(events)
    await show(query, text, keyboard, answered=callback_data.stage != TABLE)


def _choice_text(trigger: str) -> str:
    return _("Which stage should <code>{event}</code> move contacts to?").format(
        event=render.e(trigger_label(trigger))
    )


def _choices(number: int, live: list[Stage]) -> InlineKeyboardMarkup:
    keys = Keys()
    for stage in live:
        assert stage.id is not None
        keys.button(
            text=f"{render.CATEGORY_MARK[stage.category]} {stage.name}",
            callback_data=RuleCb(t=number, stage=stage.id),
        )
    keys.button(text="🚫 " + _("No stage change"), callback_data=RuleCb(t=number, stage=NO_CHANGE))
    keys.button(text="↺ " + _("Default"), callback_data=RuleCb(t=number, stage=DEFAULT))
    keys.button(text="↩ " + _("Back"), callback_data=RuleCb(t=number, stage=TABLE))
    keys.adjust(2)
    return keys.as_markup()


# --- /apikeys -------------------------------------------------------------------------------


async def apikeys_command(
    message: Message, command: CommandObject, user: User, api_keys: ApiKeyService, zone: ZoneInfo
) -> None:
    if user.role is not Role.ADMIN:
        await message.answer(_("Only admins manage API keys."))
        return
    args = (command.args or "").strip()
    if args.lower().startswith("create"):
        name = args[len("create") :].strip()
        if not name:
            await message.answer(_usage())
            return
        try:
            key, secret = await api_keys.create(user, name)
        except DomainError as error:
            await message.answer(refusal(error))
            return
        await message.answer(
            _(
                "Created the key <b>{name}</b>. Copy it now: it is not shown again, and delete "
                "this message afterwards.\n<code>{secret}</code>\n"
                "Send it as the header <code>Authorization: Bearer …</code> to /api/v1."
            ).format(name=render.e(key.name), secret=secret)
        )
        return
    text, keyboard = await _keys(api_keys, user, zone)
    await message.answer(text, reply_markup=keyboard)


def _usage() -> str:
    return _("Create one with /apikeys create <i>name</i>, e.g. /apikeys create website.")


async def _keys(
    api_keys: ApiKeyService, user: User, zone: ZoneInfo
) -> tuple[str, InlineKeyboardMarkup | None]:
    listed = await api_keys.list(user)
    if not listed:
        return _("No API keys yet.") + "\n" + _usage(), None
    lines = [_("<b>API keys</b> of the HTTP API:")]
    keys = Keys()
    for key in listed:
        assert key.id is not None
        since = render.when(key.created_at, zone)
        if key.revoked_at is not None:
            state = _("revoked {when}").format(when=render.when(key.revoked_at, zone))
        else:
            state = _("since {when}").format(when=since)
            keys.button(
                text="🗑 " + render.short(key.name, 30), callback_data=ApiKeyCb(id=key.id, act="del")
            )
        lines.append(f"• {render.e(key.name)} — <code>{key.prefix}…</code> · {state}")
    keys.adjust(2)
    return render.fit([*lines, "", _usage()]), keys.as_markup()


async def apikey_button(
    query: CallbackQuery,
    callback_data: ApiKeyCb,
    user: User,
    api_keys: ApiKeyService,
    zone: ZoneInfo,
) -> None:
    if user.role is not Role.ADMIN:
        await query.answer(_("Only admins manage API keys."), show_alert=True)
        return
    try:
        key = next((k for k in await api_keys.list(user) if k.id == callback_data.id), None)
        if key is not None and key.active and callback_data.act == "del":
            confirm = Keys()
            confirm.button(
                text="🗑 " + _("Revoke"), callback_data=ApiKeyCb(id=key.id or 0, act="yes")
            )
            confirm.button(text="↩ " + _("Back"), callback_data=ApiKeyCb(id=0, act="list"))
            text = _("Revoke the key {name}? Whatever sends it is refused from then on.").format(
                name=render.e(key.name)
            )
            await show(query, text, confirm.as_markup())
            return
        if key is not None and key.active and callback_data.act == "yes":
            await api_keys.revoke(user, key.name)
            await query.answer(_("Revoked."))
            text, keyboard = await _keys(api_keys, user, zone)
            await show(query, text, keyboard, answered=True)
            return
    except DomainError as error:
        await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
        return
    text, keyboard = await _keys(api_keys, user, zone)
    await show(query, text, keyboard)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(rules_command, Command("rules"))
    router.message.register(apikeys_command, Command("apikeys"))
    router.callback_query.register(rule_button, RuleCb.filter())
    router.callback_query.register(apikey_button, ApiKeyCb.filter())
    return router
