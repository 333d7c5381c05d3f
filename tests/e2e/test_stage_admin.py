"""Stage administration and bulk work in chat (ISSUE 5, parts 1–3)."""

from __future__ import annotations

from typing import Any

from domain.access import SYSTEM
from domain.services.contacts import ContactDraft
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


async def counts(driver: Driver) -> dict[str, tuple[str, int]]:
    return {
        s.stage.name: (s.stage.category.value, s.contacts)
        for s in await driver.services.stages.summaries()
    }


async def edited_into(driver: Driver, message: dict[str, Any], edits_before: int) -> list[str]:
    """The texts the bot edited into `message` since its `edits_before`th edit, in order."""
    edits = (await driver.requests("editMessageText"))[edits_before:]
    return [
        e["params"]["text"]
        for e in edits
        if int(e["params"]["message_id"]) == message["message_id"] and "error_code" not in e
    ]


async def test_an_admin_deletes_a_stage_after_a_confirmation_stating_its_effect(
    driver: Driver, team: Team
) -> None:
    [overview] = await driver.ask(ADMIN_ID, "/stages")
    assert "Lead — 2" in overview["text"]
    [lead] = await press(driver, ADMIN_ID, overview, "Lead")
    [targets] = await press(driver, ADMIN_ID, lead, "Delete")
    [confirm] = await press(driver, ADMIN_ID, targets, "Disqualified")
    assert "2 contact(s) will move to Disqualified" in confirm["text"]
    assert (await counts(driver))["Lead"] == ("open", 2)  # nothing yet
    edits_before = len(await driver.requests("editMessageText"))
    [done] = await press_until(driver, ADMIN_ID, confirm, "Not a fit", "Deleted Lead")
    [moving, result] = await edited_into(driver, done, edits_before)
    assert moving == "Moving 2 contact(s) from Lead to Disqualified…"
    assert result.startswith("Deleted Lead; 2 contact(s) moved.")
    assert "Lead" not in await counts(driver)
    history = await driver.services.contacts.history(SYSTEM, team.an)
    assert (history[-1].source.value, history[-1].reason) == ("reassign", "Not a fit")


async def test_an_admin_recategorizes_a_stage_in_one_step(driver: Driver, team: Team) -> None:
    [overview] = await driver.ask(ADMIN_ID, "/stages")
    [stage] = await press(driver, ADMIN_ID, overview, "Unsubscribed")
    [confirm] = await press(driver, ADMIN_ID, stage, "Make won")
    assert "every report" in confirm["text"]
    await press(driver, ADMIN_ID, confirm, "Confirm")
    assert (await counts(driver))["Unsubscribed"][0] == "won"


async def test_a_refused_new_stage_name_is_asked_again(driver: Driver, team: Team) -> None:
    [overview] = await driver.ask(ADMIN_ID, "/stages")
    [stage] = await press(driver, ADMIN_ID, overview, "Unsubscribed")
    await press(driver, ADMIN_ID, stage, "Rename")
    [refused] = await driver.ask(ADMIN_ID, "mql")  # another stage's name
    assert "Send it again" in refused["text"]
    [renamed] = await driver.ask(ADMIN_ID, "Opted out")
    assert "Renamed to Opted out" in renamed["text"]
    assert "Opted out" in await counts(driver)


async def test_the_last_won_stage_cannot_be_deleted_in_chat_either(
    driver: Driver, team: Team
) -> None:
    await driver.services.stages.delete(SYSTEM, "Loyal customer")
    [overview] = await driver.ask(ADMIN_ID, "/stages")
    [stage] = await press(driver, ADMIN_ID, overview, "Customer")
    [targets] = await press(driver, ADMIN_ID, stage, "Delete")
    [confirm] = await press(driver, ADMIN_ID, targets, "Lead")
    _, answer = await click(driver, ADMIN_ID, confirm, button(confirm, "Confirm"))
    assert answer is not None
    assert "won first" in answer["text"]
    assert "Customer" in await counts(driver)


async def test_agents_cannot_administer_stages(driver: Driver, team: Team) -> None:
    [refused] = await driver.ask(LAN, "/stages")
    assert "Only admins" in refused["text"]
    [card] = await driver.ask(LAN, "nguyen van an")
    lead = await driver.services.contacts.stage_by_name("Lead")
    _, answer = await click(driver, LAN, card, f"sa:{lead.id}:deleteok:none:-1")
    assert answer is not None
    assert "Only admins" in answer["text"]
    assert "Lead" in await counts(driver)


async def test_a_bulk_move_is_confirmed_then_undone(driver: Driver, team: Team) -> None:
    [plan] = await driver.ask(ADMIN_ID, "/move nguyen")
    assert "1 contact(s) match" in plan["text"]
    [confirm] = await press(driver, ADMIN_ID, plan, "SQL")
    assert "Move 1 contact(s) to SQL?" in confirm["text"]
    edits_before = len(await driver.requests("editMessageText"))
    [moved] = await press_until(driver, ADMIN_ID, confirm, "Confirm", "Moved 1 contact(s) to SQL")
    assert await edited_into(driver, moved, edits_before) == [
        "Moving 1 contact(s) to SQL…",
        moved["text"],
    ]
    assert await stage_of(driver, team.an) == "SQL"
    [listed] = await driver.ask(ADMIN_ID, "/undo")
    [operation] = await driver.services.operations.recent(SYSTEM)
    local = operation.created_at.astimezone(driver.services.settings.zone)
    [offered] = [key["text"] for row in listed["reply_markup"]["inline_keyboard"] for key in row]
    assert offered.startswith(f"#{operation.id} {local:%d/%m %H:%M} ")  # the team's time
    [undone] = await press(driver, ADMIN_ID, moved, "Undo")
    assert "back as they were" in undone["text"]
    assert await stage_of(driver, team.an) == "Lead"
    [nothing] = await driver.ask(ADMIN_ID, "/undo")
    assert "no bulk operation" in nothing["text"]


async def test_a_bulk_move_moves_what_was_confirmed_or_nothing(driver: Driver, team: Team) -> None:
    [older] = await driver.ask(ADMIN_ID, "/move nguyen")
    [plan] = await driver.ask(ADMIN_ID, "/move minh phat")
    _, refused = await click(driver, ADMIN_ID, older, button(older, "SQL"))
    assert refused is not None
    assert "out of date" in refused["text"]
    [confirm] = await press(driver, ADMIN_ID, plan, "SQL")
    assert "Move 1 contact(s) to SQL?" in confirm["text"]
    lan = await driver.services.users.by_telegram_id(LAN)
    assert lan is not None
    await driver.services.contacts.add(lan, ContactDraft(name="Lê Minh Phát", stage="Lead"))
    [changed] = await press_until(driver, ADMIN_ID, confirm, "Confirm", "nothing was moved")
    assert "2 contact(s) match now, not the 1 confirmed" in changed["text"]
    assert await stage_of(driver, team.an) == "Lead"


async def test_undo_asks_before_reverting_around_a_contact_changed_since(
    driver: Driver, team: Team
) -> None:
    await driver.services.stages.delete(SYSTEM, "Customer", reassign_to="Loyal customer")
    loyal = await driver.services.contacts.stage_by_name("Loyal customer")
    sql = await driver.services.contacts.stage_by_name("SQL")
    await driver.services.contacts.set_stage(SYSTEM, team.won, sql.id, reason="Refund")
    [menu] = await driver.ask(ADMIN_ID, "/undo")
    [warning] = await press(driver, ADMIN_ID, menu, "Deleted stage")
    assert "Khách Thắng" in warning["text"]
    [done] = await press(driver, ADMIN_ID, warning, "Revert the others")
    assert "left alone" in done["text"]
    assert await stage_of(driver, team.won) == "SQL"
    assert loyal.id is not None
