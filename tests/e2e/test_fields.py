"""Custom fields and tags in chat (ISSUE 5, part 5), and a saved view's Move all and Export
buttons (parts 2, 4 and 6), in every bot mode."""

from __future__ import annotations

from domain.access import SYSTEM
from domain.model import FieldKind
from tests.e2e.conftest import (
    ADMIN_ID,
    LAN,
    Driver,
    Team,
    button,
    click,
    press,
    press_until,
    stage_of,
)
from tests.e2e.test_export import download


async def card_of(driver: Driver, user: int, name: str) -> dict[str, object]:
    replies = await driver.ask(user, name)
    return replies[-1]  # type: ignore[no-any-return]


async def test_an_admin_defines_fields_and_deletes_one_after_confirming(
    driver: Driver, team: Team
) -> None:
    [refused] = await driver.ask(LAN, "/fields add Hạng text")
    assert "Only admins" in refused["text"]
    [added] = await driver.ask(ADMIN_ID, "/fields add Ngành hàng choice: Bán lẻ, Sản xuất")
    assert "Added the choice field Ngành hàng" in added["text"]
    [wrong] = await driver.ask(ADMIN_ID, "/fields add Hạng colour")
    assert "/fields add" in wrong["text"]
    [overview] = await driver.ask(ADMIN_ID, "/fields")
    assert "Ngành hàng — choice: Bán lẻ, Sản xuất" in overview["text"]
    [confirm] = await press(driver, ADMIN_ID, overview, "Ngành hàng")
    assert "Contacts keep their values" in confirm["text"]
    assert await driver.services.fields.list() != []
    [after] = await press(driver, ADMIN_ID, confirm, "Delete")
    assert "No custom fields yet" in after["text"]
    assert await driver.services.fields.list() == []


async def test_an_agent_sets_tags_and_fields_from_the_card(driver: Driver, team: Team) -> None:
    fields = driver.services.fields
    await fields.add(SYSTEM, "Ngành", FieldKind.CHOICE, ["Bán lẻ", "Sản xuất"])
    await fields.add(SYSTEM, "Ngân sách", FieldKind.NUMBER)
    card = await card_of(driver, LAN, "nguyen van an")
    [prompt] = await press(driver, LAN, card, "Tags")
    assert "separated by commas" in prompt["text"]
    replies = await driver.ask(LAN, "VIP, hội chợ 2025")
    assert "Tags saved." in replies[0]["text"]
    assert "🏷 VIP, hội chợ 2025" in replies[-1]["text"]

    [listing] = await press(driver, LAN, replies[-1], "Fields")
    [choices] = await press(driver, LAN, listing, "Ngành")
    [card] = await press(driver, LAN, choices, "Sản xuất")
    assert "Ngành: Sản xuất" in card["text"]

    [listing] = await press(driver, LAN, card, "Fields")
    [prompt] = await press(driver, LAN, listing, "Ngân sách")
    assert "Send a number" in prompt["text"]
    [again] = await driver.ask(LAN, "a lot")
    assert "not a number" in again["text"]
    replies = await driver.ask(LAN, "1.500.000")
    assert "Ngân sách: 1500000" in replies[-1]["text"]
    contact = (await driver.services.contacts.get(SYSTEM, team.an)).contact
    assert contact.custom_fields == {"Ngành": "Sản xuất", "Ngân sách": "1500000"}
    assert contact.tags == ["VIP", "hội chợ 2025"]


async def test_a_stale_or_forged_field_button_changes_nothing(driver: Driver, team: Team) -> None:
    await driver.services.fields.add(SYSTEM, "Ngành", FieldKind.CHOICE, ["Bán lẻ", "Sản xuất"])
    card = await card_of(driver, LAN, "nguyen van an")
    [listing] = await press(driver, LAN, card, "Fields")
    [choices] = await press(driver, LAN, listing, "Ngành")
    await driver.services.contacts.set_tags(SYSTEM, team.an, ["moved on"], expected_version=1)
    [fresh], answer = await click(driver, LAN, choices, button(choices, "Bán lẻ"))
    assert answer is not None
    assert "changed this lead meanwhile" in answer["text"]
    assert "Bán lẻ" not in fresh["text"]
    forged = button(choices, "Bán lẻ").replace(f"fld:{team.an}:", f"fld:{team.bich}:")
    _, answer = await click(driver, LAN, choices, forged)
    assert answer is not None
    assert "may not" in answer["text"]
    [bich] = await driver.services.contacts.find(SYSTEM, "Trần Thị Bích")
    assert bich.contact.custom_fields == {}
    assert (await driver.services.contacts.get(SYSTEM, team.an)).contact.custom_fields == {}


async def test_a_view_moves_all_its_contacts_and_exports_them(driver: Driver, team: Team) -> None:
    [saved] = await driver.ask(LAN, "/views save Leads: stage=Lead")
    [listing] = await press(driver, LAN, saved, "Open")
    [sent] = await press(driver, LAN, listing, "Export")
    rows = await download(driver, sent["document"])
    assert [row["name"] for row in rows] == ["Nguyễn Văn An"]  # not Otto's Bích
    [offer] = await press(driver, LAN, listing, "Move all")
    assert "1 contact(s) are in this view" in offer["text"]
    [confirm] = await press(driver, LAN, offer, "MQL")
    # The message says what is moving, then what moved.
    [done] = await press_until(driver, LAN, confirm, "Confirm", "Moved 1 contact(s) to MQL")
    assert await stage_of(driver, team.an) == "MQL"
    assert await stage_of(driver, team.bich) == "Lead"
    [undone] = await press(driver, LAN, done, "Undo")
    assert "back as they were" in undone["text"]
    assert await stage_of(driver, team.an) == "Lead"
