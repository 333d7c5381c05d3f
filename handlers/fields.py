"""Custom fields and tags. `/fields` (admins): the defined fields, `/fields add NAME KIND[:
choices]`, delete behind a confirmation. On a contact's card: 🏷 Tags asks for the tags, 🗂 Fields
lists the fields with their values, a choice field offers its choices as buttons."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from domain.errors import DomainError
from domain.model import CustomFieldDef, FieldKind, Role, User
from domain.services.contacts import ContactService
from domain.services.fields import FieldService
from handlers import render
from handlers.callbacks import CardCb, FieldAdminCb, FieldCb, TagsCb
from handlers.contacts import contact_or_alert, refused_on_card, send_card, show_card
from handlers.keys import Keys
from handlers.replies import show
from handlers.texts import explain, refusal

KIND = {
    FieldKind.TEXT: __("text"),
    FieldKind.NUMBER: __("number"),
    FieldKind.DATE: __("date"),
    FieldKind.CHOICE: __("choice"),
}
CLEAR = -2
_TAG_SEPARATORS = re.compile(r"[,;\n]")


class EditInput(StatesGroup):
    tags = State()
    field = State()


# --- admins: the definitions ----------------------------------------------------------------


async def fields_command(
    message: Message, command: CommandObject, user: User, fields: FieldService
) -> None:
    if user.role is not Role.ADMIN:
        await message.answer(_("Only admins define custom fields."))
        return
    args = (command.args or "").strip()
    if args.lower().startswith("add "):
        await _add(message, args[4:], user, fields)
        return
    text, keyboard = await _overview(fields)
    await message.answer(text, reply_markup=keyboard)


async def _add(message: Message, text: str, user: User, fields: FieldService) -> None:
    head, colon, choices = text.partition(":")
    name, _space, kind_word = head.strip().rpartition(" ")
    kinds = {kind.value: kind for kind in FieldKind} | {str(v): k for k, v in KIND.items()}
    kind = kinds.get(kind_word.lower())
    if not name or kind is None:
        await message.answer(_usage())
        return
    try:
        field = await fields.add(user, name, kind, choices.split(",") if colon else [])
    except DomainError as error:
        await message.answer(refusal(error))
        return
    await message.answer(
        _("Added the {kind} field {name}. It is on every card under 🗂 Fields.").format(
            kind=KIND[field.kind], name=render.e(field.name)
        )
    )


def _usage() -> str:
    return _(
        "Add one: /fields add <i>name</i> <i>kind</i>, the kind being text, number, date or "
        "choice; a choice field lists its choices after a colon:\n"
        "<code>/fields add Industry choice: Retail, Manufacturing, Services</code>"
    )


async def _overview(fields: FieldService) -> tuple[str, InlineKeyboardMarkup | None]:
    defined = await fields.list()
    if not defined:
        return _("No custom fields yet.") + "\n" + _usage(), None
    lines = [_("<b>Custom fields</b>:")]
    keys = Keys()
    for field in defined:
        assert field.id is not None
        choices = f": {render.e(', '.join(field.choices))}" if field.choices else ""
        lines.append(f"• {render.e(field.name)} — {KIND[field.kind]}{choices}")
        keys.button(
            text="🗑 " + render.short(field.name, 30),
            callback_data=FieldAdminCb(id=field.id, act="del"),
        )
    keys.adjust(2)
    return "\n".join([*lines, "", _usage()]), keys.as_markup()


async def field_admin(
    query: CallbackQuery, callback_data: FieldAdminCb, user: User, fields: FieldService
) -> None:
    if user.role is not Role.ADMIN:
        await query.answer(_("Only admins define custom fields."), show_alert=True)
        return
    field = _by_id(await fields.list(), callback_data.id)
    if field is None or callback_data.act == "list":
        if field is None and callback_data.act != "list":
            await query.answer(_("That field no longer exists."), show_alert=True)
        text, keyboard = await _overview(fields)
        await show(query, text, keyboard, answered=field is None and callback_data.act != "list")
        return
    if callback_data.act == "del":
        keys = Keys()
        keys.button(
            text="🗑 " + _("Delete"), callback_data=FieldAdminCb(id=callback_data.id, act="yes")
        )
        keys.button(text="↩ " + _("Back"), callback_data=FieldAdminCb(id=0, act="list"))
        text = _(
            "Delete the field {name}? Contacts keep their values, shown and exported as text."
        ).format(name=render.e(field.name))
        await show(query, text, keys.as_markup())
        return
    if callback_data.act == "yes":
        try:
            await fields.delete(user, field.name)
        except DomainError as error:
            await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
            return
    text, keyboard = await _overview(fields)
    await show(query, text, keyboard)


# --- on the card: tags ----------------------------------------------------------------------


async def ask_tags(
    query: CallbackQuery,
    callback_data: TagsCb,
    user: User,
    contacts: ContactService,
    state: FSMContext,
) -> None:
    details = await contact_or_alert(query, contacts, user, callback_data.id)
    if details is None:
        return
    await state.set_state(EditInput.tags)
    await state.update_data(id=callback_data.id, v=callback_data.v)
    now = ", ".join(details.contact.tags) or "—"
    await query.answer()
    assert query.message is not None
    await query.message.answer(
        _(
            "Send the tags of <b>{name}</b>, separated by commas (now: {tags}). "
            "Send - to remove them all."
        ).format(name=render.e(details.contact.label()), tags=render.e(now)),
        reply_markup=render.cancel_keyboard(EditInput, callback_data.id),
    )


async def typed_tags(
    message: Message, user: User, contacts: ContactService, state: FSMContext, zone: ZoneInfo
) -> None:
    data = await state.get_data()
    text = (message.text or "").strip()
    tags = [] if text == "-" else _TAG_SEPARATORS.split(text)
    try:
        await contacts.set_tags(user, data["id"], tags, expected_version=data["v"])
    except DomainError as error:
        reply = refusal(error)
    else:
        reply = _("Tags saved.")
    await _end_edit(message, state, reply, contacts, user, data["id"], zone)


# --- on the card: custom fields -------------------------------------------------------------


async def edit_field(
    query: CallbackQuery,
    callback_data: FieldCb,
    user: User,
    contacts: ContactService,
    fields: FieldService,
    state: FSMContext,
    zone: ZoneInfo,
) -> None:
    details = await contact_or_alert(query, contacts, user, callback_data.id)
    if details is None:
        return
    contact = details.contact
    defined = await fields.list()
    if not defined:
        await query.answer(
            _("There are no custom fields yet; an admin adds them with /fields."), show_alert=True
        )
        return
    if callback_data.f == 0:
        keys = Keys()
        for each in defined:
            assert each.id is not None
            value = contact.custom_fields.get(each.key, "—")
            keys.button(
                text=render.short(f"{each.name}: {value}", 40),
                callback_data=FieldCb(id=callback_data.id, v=callback_data.v, f=each.id),
            )
        keys.button(text="↩ " + _("Back"), callback_data=CardCb(id=callback_data.id))
        keys.adjust(1)
        text = _("Which field of <b>{name}</b>?").format(name=render.e(contact.label()))
        await show(query, text, keys.as_markup())
        return
    field = _by_id(defined, callback_data.f)
    if field is None:
        await query.answer(_("That field no longer exists."), show_alert=True)
        return
    if callback_data.c == -1 and field.kind is not FieldKind.CHOICE:
        await state.set_state(EditInput.field)
        await state.update_data(id=callback_data.id, v=callback_data.v, f=field.id)
        await query.answer()
        assert query.message is not None
        await query.message.answer(
            _prompt(field, contact.label()), reply_markup=_clear(callback_data)
        )
        return
    if callback_data.c == -1:
        await show(query, _prompt(field, contact.label()), _choices(field, callback_data))
        return
    if callback_data.c != CLEAR and not 0 <= callback_data.c < len(field.choices):
        await query.answer(_("This list is out of date; ask again."), show_alert=True)
        return
    value = "" if callback_data.c == CLEAR else field.choices[callback_data.c]
    try:
        await contacts.set_field(
            user, callback_data.id, field.name, value, expected_version=callback_data.v
        )
    except DomainError as error:
        await refused_on_card(query, error, contacts, user, callback_data.id, zone)
        return
    await query.answer(_("Saved."))
    await show_card(query, contacts, user, callback_data.id, zone, answered=True)


async def typed_field(
    message: Message,
    user: User,
    contacts: ContactService,
    fields: FieldService,
    state: FSMContext,
    zone: ZoneInfo,
) -> None:
    data = await state.get_data()
    field = _by_id(await fields.list(), data["f"])
    if field is None:
        await state.clear()
        await message.answer(_("That field no longer exists."))
        return
    try:
        await contacts.set_field(
            user, data["id"], field.name, message.text or "", expected_version=data["v"]
        )
    except DomainError as error:
        if error.code == "field_value":  # let them try again
            await message.answer(refusal(error) + "\n" + _prompt(field, ""))
            return
        reply = refusal(error)
    else:
        reply = _("Saved.")
    await _end_edit(message, state, reply, contacts, user, data["id"], zone)


async def _end_edit(
    message: Message,
    state: FSMContext,
    reply: str,
    contacts: ContactService,
    user: User,
    contact_id: int,
    zone: ZoneInfo,
) -> None:
    """A typed edit is over, done or refused: say so, then show the card again."""
    await state.clear()
    await message.answer(reply)
    await send_card(message, contacts, user, contact_id, zone)


def _prompt(field: CustomFieldDef, name: str) -> str:
    hints = {
        FieldKind.TEXT: _("Send the text."),
        FieldKind.NUMBER: _("Send a number, e.g. 1.500.000 or 2,5."),
        FieldKind.DATE: _("Send a date as DD/MM/YYYY, e.g. 25/12/2026."),
        FieldKind.CHOICE: _("Choose one."),
    }
    head = (
        _("<b>{field}</b> of <b>{name}</b>.").format(
            field=render.e(field.name), name=render.e(name)
        )
        if name
        else ""
    )
    return f"{head} {hints[field.kind]}".strip()


def _choices(field: CustomFieldDef, at: FieldCb) -> InlineKeyboardMarkup:
    keys = Keys()
    for number, choice in enumerate(field.choices):
        keys.button(text=choice, callback_data=FieldCb(id=at.id, v=at.v, f=at.f, c=number))
    keys.button(text="✖️ " + _("Clear"), callback_data=FieldCb(id=at.id, v=at.v, f=at.f, c=CLEAR))
    keys.button(text="↩ " + _("Back"), callback_data=FieldCb(id=at.id, v=at.v))
    keys.adjust(2)
    return keys.as_markup()


def _clear(at: FieldCb) -> InlineKeyboardMarkup:
    keys = Keys()
    keys.button(text="✖️ " + _("Clear"), callback_data=FieldCb(id=at.id, v=at.v, f=at.f, c=CLEAR))
    keys.button(text="↩ " + _("Back"), callback_data=CardCb(id=at.id))
    return keys.as_markup()


def _by_id(defined: list[CustomFieldDef], field_id: int) -> CustomFieldDef | None:
    return next((field for field in defined if field.id == field_id), None)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(fields_command, Command("fields"))
    router.message.register(typed_tags, StateFilter(EditInput.tags), F.text)
    router.message.register(typed_field, StateFilter(EditInput.field), F.text)
    router.callback_query.register(field_admin, FieldAdminCb.filter())
    router.callback_query.register(ask_tags, TagsCb.filter())
    router.callback_query.register(edit_field, FieldCb.filter())
    return router
