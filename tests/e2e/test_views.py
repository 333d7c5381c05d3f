"""Saved views in chat (ISSUE 5, part 4)."""

from __future__ import annotations

from tests.e2e.conftest import LAN, MANAGER, Driver, Team, press


async def test_an_agent_saves_a_view_and_opens_it_as_a_list(driver: Driver, team: Team) -> None:
    [saved] = await driver.ask(LAN, "/views save Mở: category=open")
    assert "Saved Mở: category=open" in saved["text"]
    [listing] = await press(driver, LAN, saved, "Open")
    assert "Nguyễn Văn An" in str(listing["reply_markup"])
    assert "Khách Thắng" not in str(listing["reply_markup"])  # won, not open
    [card] = await press(driver, LAN, listing, "Nguyễn Văn An")
    assert "Lead (open)" in card["text"]


async def test_a_shared_view_is_offered_to_the_team_and_a_bad_filter_is_explained(
    driver: Driver, team: Team
) -> None:
    await driver.ask(MANAGER, "/views save Won deals: category=won shared")
    [menu] = await driver.ask(LAN, "/views")
    assert "Won deals" in str(menu["reply_markup"])
    [refused] = await driver.ask(LAN, "/views save Bad: colour=red")
    assert "Unknown key" in refused["text"]
    [refused] = await driver.ask(LAN, "/views save Shared: stage=Lead shared")
    assert "share" in refused["text"]
