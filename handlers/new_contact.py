"""/new: add a contact step by step — name, phone or email, company, source, starting stage and,
for managers and admins, the owner. /cancel (or the button) stops at any step."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _

from domain.errors import DomainError, DuplicateContact
from domain.model import Category, Role, User
from domain.services.contacts import ContactDetails, ContactDraft, ContactService
from domain.services.stages import StageService
from handlers import render
from handlers.callbacks import CardCb, NewCb
from handlers.contacts import send_card
from handlers.keys import Keys
from handlers.texts import explain, refusal

SOURCES = ("Facebook", "Zalo", "Website", "Referral", "Cold call", "Trade show")
SKIP = "-"


class NewContact(StatesGroup):
    name = State()
    reach = State()
    company = State()
    source = State()
    stage = State()
    owner = State()


async def start(message: Message, state: FSMContext) -> None:
    await state.clear()
    await state.set_state(NewContact.name)
    await message.answer(
        _("New contact. What is their name?"), reply_markup=render.cancel_keyboard(NewContact)
    )


async def got_name(message: Message, state: FSMContext) -> None:
    name = " ".join((message.text or "").split())
    if not name or len(name) > 200:
        await message.answer(_("A name has 1 to 200 characters. What is their name?"))
        return
    await state.update_data(name=name)
    await state.set_state(NewContact.reach)
    await message.answer(
        _("Their phone or email? (send {skip} to skip)").format(skip=SKIP),
        reply_markup=render.cancel_keyboard(NewContact),
    )


async def got_reach(
    message: Message, state: FSMContext, user: User, contacts: ContactService
) -> None:
    text = (message.text or "").strip()
    if text != SKIP:
        field = "email" if "@" in text else "phone"
        try:
            existing, visible = await contacts.existing(user, **{field: text})
        except DomainError as error:
            await message.answer(
                refusal(error) + "\n" + _("Try again, or send {skip}.").format(skip=SKIP)
            )
            return
        if existing is not None:
            await state.clear()
            await _offer_existing(message, existing, visible)
            return
        await state.update_data({field: text})
    await state.set_state(NewContact.company)
    await message.answer(
        _("Their company? (send {skip} if none)").format(skip=SKIP),
        reply_markup=render.cancel_keyboard(NewContact),
    )


async def _offer_existing(message: Message, existing: ContactDetails, visible: bool) -> None:
    contact = existing.contact
    assert contact.id is not None
    if not visible:
        owner = existing.owner.name if existing.owner else _("nobody")
        await message.answer(
            _("{name} is already in the CRM, owned by {owner}. Ask them or your manager.").format(
                name=render.e(contact.label()), owner=render.e(owner)
            )
        )
        return
    keys = Keys()
    keys.button(
        text=_("Open {name}").format(name=contact.label()), callback_data=CardCb(id=contact.id)
    )
    await message.answer(
        _("{name} already has that phone or email; nothing new was created.").format(
            name=render.e(contact.label())
        ),
        reply_markup=keys.as_markup(),
    )


async def got_company(message: Message, state: FSMContext) -> None:
    text = " ".join((message.text or "").split())
    if text != SKIP:
        if len(text) > 200:
            await message.answer(_("A company name has at most 200 characters."))
            return
        await state.update_data(company=text)
    await state.set_state(NewContact.source)
    keys = Keys()
    for number, source in enumerate(SOURCES, start=1):
        keys.button(text=source, callback_data=NewCb(step="source", value=number))
    keys.button(text=_("Skip"), callback_data=NewCb(step="source", value=0))
    keys.button(text="✖️ " + _("Cancel"), callback_data=render.cancel_of(NewContact))
    keys.adjust(3)
    await message.answer(
        _("Where did the lead come from? Choose, or type it."), reply_markup=keys.as_markup()
    )


async def typed_source(message: Message, state: FSMContext, stages: StageService) -> None:
    source = " ".join((message.text or "").split())[:100]
    await state.update_data(source=source)
    await _ask_stage(message, state, stages)


async def chose_source(
    query: CallbackQuery, callback_data: NewCb, state: FSMContext, stages: StageService
) -> None:
    if callback_data.value:
        if not 1 <= callback_data.value <= len(SOURCES):
            await query.answer(_("Choose again."), show_alert=True)
            return
        await state.update_data(source=SOURCES[callback_data.value - 1])
    await query.answer()
    assert isinstance(query.message, Message)
    await _ask_stage(query.message, state, stages)


async def _ask_stage(message: Message, state: FSMContext, stages: StageService) -> None:
    await state.set_state(NewContact.stage)
    keys = Keys()
    for stage in await stages.ordered():
        if stage.category is Category.OPEN and stage.id is not None:
            keys.button(text=stage.name, callback_data=NewCb(step="stage", value=stage.id))
    keys.button(text=_("No stage"), callback_data=NewCb(step="stage", value=0))
    keys.button(text="✖️ " + _("Cancel"), callback_data=render.cancel_of(NewContact))
    keys.adjust(3)
    await message.answer(_("Which stage does it start in?"), reply_markup=keys.as_markup())


async def chose_stage(
    query: CallbackQuery,
    callback_data: NewCb,
    state: FSMContext,
    user: User,
    contacts: ContactService,
    stages: StageService,
    zone: ZoneInfo,
) -> None:
    if callback_data.value:
        try:
            stage = await stages.get(callback_data.value)
        except DomainError as error:
            await query.answer(explain(error, get_i18n().current_locale), show_alert=True)
            return
        await state.update_data(stage=stage.name)
    await query.answer()
    assert isinstance(query.message, Message)
    if user.role is Role.AGENT:
        await _create(query.message, state, user, contacts, zone)
        return
    await state.set_state(NewContact.owner)
    await query.message.answer(
        _("Who will own it?"), reply_markup=await _owner_keyboard(user, contacts)
    )


async def _owner_keyboard(user: User, contacts: ContactService) -> InlineKeyboardMarkup:
    keys = Keys()
    keys.button(text=_("Me"), callback_data=NewCb(step="owner", value=0))
    for owner in (await contacts.owners_for(user))[:30]:
        if owner.id is not None and owner.id != user.id:
            keys.button(
                text=render.short(owner.name, 30), callback_data=NewCb(step="owner", value=owner.id)
            )
    keys.button(text="✖️ " + _("Cancel"), callback_data=render.cancel_of(NewContact))
    keys.adjust(2)
    return keys.as_markup()


async def chose_owner(
    query: CallbackQuery,
    callback_data: NewCb,
    state: FSMContext,
    user: User,
    contacts: ContactService,
    zone: ZoneInfo,
) -> None:
    if callback_data.value:
        owners = {o.id: o for o in await contacts.owners_for(user)}
        owner = owners.get(callback_data.value)
        if owner is None or (owner.telegram_id is None and owner.name is None):
            await query.answer(_("Choose again."), show_alert=True)
            return
        await state.update_data(owner_id=owner.id, owner_name=owner.name)
    await query.answer()
    assert isinstance(query.message, Message)
    await _create(query.message, state, user, contacts, zone)


async def _create(
    message: Message, state: FSMContext, user: User, contacts: ContactService, zone: ZoneInfo
) -> None:
    data = await state.get_data()
    draft = ContactDraft(
        name=data.get("name"),
        phone=data.get("phone"),
        email=data.get("email"),
        company=data.get("company"),
        source=data.get("source"),
        stage=data.get("stage"),
    )
    try:
        contact = await contacts.add(user, draft)
        if data.get("owner_id"):
            assert contact.id is not None
            contact = await contacts.reassign(user, contact.id, data["owner_id"])
    except DuplicateContact as duplicate:  # someone added it since the phone was checked
        await state.clear()
        existing, visible = await contacts.existing(user, phone=draft.phone, email=draft.email)
        if existing is None:
            await message.answer(refusal(duplicate))
        else:
            await _offer_existing(message, existing, visible)
        return
    except DomainError as error:
        await state.clear()
        await message.answer(refusal(error))
        return
    assert contact.id is not None
    await message.answer(_("Added."))
    await send_card(message, contacts, user, contact.id, zone)
    # Only once answered: a worker that dies before leaves the steps in place for the update
    # delivered again, which then creates the contact or is told it exists.
    await state.clear()


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(start, Command("new"))
    router.message.register(got_name, StateFilter(NewContact.name), F.text)
    router.message.register(got_reach, StateFilter(NewContact.reach), F.text)
    router.message.register(got_company, StateFilter(NewContact.company), F.text)
    router.message.register(typed_source, StateFilter(NewContact.source), F.text)
    router.callback_query.register(
        chose_source, StateFilter(NewContact.source), NewCb.filter(F.step == "source")
    )
    router.callback_query.register(
        chose_stage, StateFilter(NewContact.stage), NewCb.filter(F.step == "stage")
    )
    router.callback_query.register(
        chose_owner, StateFilter(NewContact.owner), NewCb.filter(F.step == "owner")
    )
    return router
