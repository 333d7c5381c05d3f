"""The agent's flow in Vietnamese: Telegram's language picks the catalog, /lang changes it."""

from __future__ import annotations

import re

from aiogram.utils.i18n import gettext

from domain.access import SYSTEM
from domain.model import Role
from domain.services.contacts import ContactDraft
from handlers.i18n import build_i18n
from tests.e2e.conftest import Driver, press

HOA = 2101
I18N = build_i18n()


def vi(text: str) -> str:
    with I18N.context(), I18N.use_locale("vi"):
        translated = gettext(text)
    assert translated != text, f"{text!r} has no Vietnamese translation"
    return translated


def opening(text: str) -> str:
    """The start of a translated text, up to its first placeholder or tag: what the message
    shows verbatim."""
    return re.split(r"[{<\n]", text, maxsplit=1)[0].strip()


async def test_the_whole_agent_flow_speaks_vietnamese(driver: Driver) -> None:
    services = driver.services
    await services.stages.apply_template(SYSTEM, "amis")
    hoa = await services.users.add(SYSTEM, "Hoa", Role.AGENT, team="north", telegram_id=HOA)
    await services.contacts.add(
        hoa, ContactDraft(name="Nguyễn Văn An", phone="0912345678", stage="Lead")
    )
    await driver.user(HOA, "Hoa", language="vi")

    [hello] = await driver.ask(HOA, "/start")
    assert opening(vi("/my — your open leads by stage")) in hello["text"]
    [card] = await driver.ask(HOA, "nguyen van an")
    assert opening(vi("Stage: <b>{stage}</b>")) in card["text"]
    [stages] = await press(driver, HOA, card, vi("Stage"))
    [reasons] = await press(driver, HOA, stages, "Disqualified")
    assert opening(vi("Why was <b>{name}</b> lost?")) in reasons["text"]
    assert "Price" not in str(reasons["reply_markup"])  # the default reasons, translated
    [moved] = await press(driver, HOA, reasons, vi("Price"))
    assert f"Disqualified ({vi('lost')})" in moved["text"]
    assert f"({vi('Price')})" in moved["text"]
    # Recorded as the settings list it, so that reports group it alike for every reader.
    [found] = await services.contacts.find(SYSTEM, "Nguyễn Văn An")
    assert found.contact.id is not None
    history = await services.contacts.history(SYSTEM, found.contact.id)
    assert history[-1].reason == "Price"

    [menu] = await driver.ask(HOA, "/lang")
    [switched] = await press(driver, HOA, menu, "English")
    assert "English" in switched["text"]
    [card] = await driver.ask(HOA, "nguyen van an")
    assert "Stage:" in card["text"]
    assert "(Price)" in card["text"]
