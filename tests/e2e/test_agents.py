"""An agent's day through the sandbox (ISSUE 4): access, lookup, card, stage buttons."""

from __future__ import annotations

import pytest

from domain.access import SYSTEM
from domain.model import Role
from tests.e2e.conftest import (
    ADMIN_ID,
    LAN,
    MANAGER,
    OTTO,
    STRANGER,
    Driver,
    Team,
    button,
    click,
    press,
    stage_of,
)


@pytest.mark.usefixtures("team")
async def test_a_stranger_asks_for_access_and_an_admin_approves_into_a_team(driver: Driver) -> None:
    await driver.user(ADMIN_ID, "Ada")
    await driver.ask(ADMIN_ID, "/help")  # the admin has a chat with the bot
    await driver.user(STRANGER, "Hoa")
    [waiting] = await driver.ask(STRANGER, "/start")
    assert "asked the admins" in waiting["text"]
    [refused] = await driver.ask(STRANGER, "/my")
    assert "don't have access" in refused["text"]
    [request] = [
        m
        for m in (await driver.chat(ADMIN_ID))["messages"]
        if "asks for access" in (m["text"] or "")
    ]
    assert "Hoa" in request["text"]
    teams = await press(driver, ADMIN_ID, request, "Agent")
    [edited] = [m for m in teams if m["message_id"] == request["message_id"]]
    since = await driver.cursor(STRANGER)
    await press(driver, ADMIN_ID, edited, "north")
    [welcome] = (await driver.changes(STRANGER, since))["messages"]
    assert "You are in" in welcome["text"]
    hoa = await driver.services.users.by_telegram_id(STRANGER)
    assert hoa is not None
    assert (hoa.role, hoa.team) == (Role.AGENT, "north")
    [decided] = [
        m
        for m in (await driver.chat(ADMIN_ID))["messages"]
        if m["message_id"] == request["message_id"]
    ]
    assert "Approved as agent in team north" in decided["text"]
    [mine] = await driver.ask(STRANGER, "/my")
    assert "no open leads" in mine["text"]


async def test_an_agent_finds_a_lead_by_name_without_diacritics_and_by_phone(
    driver: Driver, team: Team
) -> None:
    for query in ("nguyen van an", "0912 345 678", "/find NGUYỄN van"):
        [card] = await driver.ask(LAN, query)
        assert "<b>" not in card["text"]  # rendered, not raw HTML
        assert "Nguyễn Văn An" in card["text"]
        assert "Lead (open)" in card["text"]


async def test_moving_to_a_lost_stage_asks_for_the_reason_and_the_card_shows_it(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, card, "Stage")
    assert "• ▫️ Lead" in str(stages["reply_markup"])
    [reasons] = await press(driver, LAN, stages, "Disqualified")
    assert "Why was" in reasons["text"]
    assert await stage_of(driver, team.an) == "Lead"
    [moved] = await press(driver, LAN, reasons, "Price")
    assert "Disqualified (lost)" in moved["text"]
    assert "Lead → Disqualified (Price)" in moved["text"]
    assert await stage_of(driver, team.an) == "Disqualified"
    [timeline] = await press(driver, LAN, moved, "Stages")
    assert "Lead → Disqualified" in timeline["text"]


async def test_undo_puts_the_lead_back(driver: Driver, team: Team) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, card, "Stage")
    [moved] = await press(driver, LAN, stages, "MQL")
    assert await stage_of(driver, team.an) == "MQL"
    [undone] = await press(driver, LAN, moved, "Undo")
    assert "Lead (open)" in undone["text"]
    history = await driver.services.contacts.history(SYSTEM, team.an)
    assert [h.source.value for h in history] == ["manual", "manual", "undo"]
    _, answer = await click(driver, LAN, moved, button(moved, "Undo"))  # pressed again
    assert answer is not None
    assert "nothing to undo" in answer["text"]
    assert len(await driver.services.contacts.history(SYSTEM, team.an)) == 3


async def test_a_second_tap_on_the_same_stage_keeps_the_undo_of_the_first(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, card, "Stage")
    data = button(stages, "MQL")
    await click(driver, LAN, stages, data)
    _, answer = await click(driver, LAN, stages, data)  # tapped twice before the edit
    assert answer is not None
    assert "already in that stage" in answer["text"]
    [shown] = await driver.replies(LAN, stages["message_id"] - 1)
    assert "MQL (open)" in shown["text"]
    [undone] = await press(driver, LAN, shown, "Undo")
    assert "Lead (open)" in undone["text"]
    assert await stage_of(driver, team.an) == "Lead"


async def test_a_forged_undo_button_changes_nothing(driver: Driver, team: Team) -> None:
    """An undo skips the rules of a move, so the button names only the contact and its version;
    what it undoes is read from the history: here Lan moved nothing."""
    [card] = await driver.ask(LAN, "nguyen van an")
    contact = await driver.services.contacts.get(SYSTEM, team.an)
    for data in (f"undo:{team.an}:{contact.contact.version}", f"undo:{team.an}:6:1:9999999999"):
        _, answer = await click(driver, LAN, card, data)
        assert answer is not None
    assert await stage_of(driver, team.an) == "Lead"
    assert len(await driver.services.contacts.history(SYSTEM, team.an)) == 1


async def test_a_forged_button_naming_another_agents_lead_is_refused(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    mql = (await driver.services.contacts.stage_by_name("MQL")).id
    click = await driver.click(LAN, card["message_id"], f"mv:{team.bich}:{mql}:1")
    await driver.handled(click)
    chat = await driver.chat(LAN, after=card["message_id"])
    [answer] = [
        a for a in chat["callback_answers"] if a["callback_query_id"] == click["callback_query_id"]
    ]
    assert "may not touch" in answer["text"]
    assert await stage_of(driver, team.bich) == "Lead"


async def test_garbage_callback_data_changes_nothing_and_is_answered(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    for data in ("mv:x:y:z", "nonsense", "mv:99999:1:1", "card:-1:"):
        _, answer = await click(driver, LAN, card, data)
        assert answer is not None, data
    assert await stage_of(driver, team.an) == "Lead"


async def test_an_agent_is_not_offered_to_reopen_a_won_lead_but_a_manager_reopens_with_a_reason(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "khach thang")
    [stages] = await press(driver, LAN, card, "Stage")
    assert "Lead" not in str(stages["reply_markup"])
    [card] = await driver.ask(MANAGER, "khach thang")
    [stages] = await press(driver, MANAGER, card, "Stage")
    [ask] = await press(driver, MANAGER, stages, "SQL")
    assert "Why reopen" in ask["text"]
    [reopened] = await driver.ask(MANAGER, "Payment bounced")
    assert "SQL (open)" in reopened["text"]
    assert (await driver.services.contacts.history(SYSTEM, team.won))[
        -1
    ].reason == "Payment bounced"


async def test_the_second_of_two_simultaneous_changes_is_told_who_changed_it(
    driver: Driver, team: Team
) -> None:
    [lan_card] = await driver.ask(LAN, "nguyen van an")
    [lan_stages] = await press(driver, LAN, lan_card, "Stage")
    [boss_card] = await driver.ask(MANAGER, "nguyen van an")
    [boss_stages] = await press(driver, MANAGER, boss_card, "Stage")
    await press(driver, MANAGER, boss_stages, "SQL")
    [fresh], answer = await click(driver, LAN, lan_stages, button(lan_stages, "MQL"))
    assert answer is not None
    assert "Minh Manager changed this lead meanwhile" in answer["text"]
    assert fresh["message_id"] == lan_stages["message_id"]
    assert "SQL (open)" in fresh["text"]
    assert await stage_of(driver, team.an) == "SQL"


async def test_an_update_delivered_twice_changes_the_stage_once(driver: Driver, team: Team) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, card, "Stage")
    sent = await driver.click(LAN, stages["message_id"], button(stages, "MQL"))
    await driver.handled(sent)
    edits = len(await driver.requests("editMessageText"))
    await driver.post("/sandbox/redeliver", update_id=sent["update_id"])
    await driver.handled(sent, times=2)
    # Answered again from what is stored (the same card, its Undo too), not refused as a
    # stale button.
    [again] = (await driver.requests("editMessageText"))[edits:]
    assert "MQL (open)" in again["params"]["text"]
    [shown] = await driver.replies(LAN, stages["message_id"] - 1)
    assert "MQL (open)" in shown["text"]
    assert button(shown, "Undo")
    history = await driver.services.contacts.history(SYSTEM, team.an)
    assert [h.to_stage_id for h in history].count(history[-1].to_stage_id) == 1
    assert len(history) == 2


async def test_notes_calls_and_tasks_land_on_the_timeline(driver: Driver, team: Team) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    await press(driver, LAN, card, "Call")
    [saved, card] = await driver.ask(LAN, "Gọi lại, khách hẹn tuần sau")
    assert "Call saved" in saved["text"]
    assert "Gọi lại, khách hẹn tuần sau" in card["text"]
    await press(driver, LAN, card, "Task")
    await driver.ask(LAN, "Send the quote")
    [saved, card] = await driver.ask(LAN, "+2")
    assert "Open tasks" in card["text"]
    assert "Send the quote" in card["text"]


async def test_a_note_leaves_the_stage_buttons_drawn_before_it_working(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, card, "Stage")
    [card] = await driver.ask(LAN, "nguyen van an")
    await press(driver, LAN, card, "Note")
    [saved, _] = await driver.ask(LAN, "Khách muốn báo giá")
    assert "Note saved" in saved["text"]
    [moved] = await press(driver, LAN, stages, "MQL")
    assert "MQL (open)" in moved["text"]
    assert await stage_of(driver, team.an) == "MQL"


async def test_new_walks_through_the_steps_and_the_creator_owns_the_contact(
    driver: Driver, team: Team
) -> None:
    await driver.ask(LAN, "/new")
    await driver.ask(LAN, "Phạm Thu Hà")
    await driver.ask(LAN, "0987 111 222")
    [source] = await driver.ask(LAN, "Công ty Sao Mai")
    [stage] = await press(driver, LAN, source, "Zalo")
    [added, card] = await press(driver, LAN, stage, "MQL")
    assert "Added" in added["text"]
    assert "Phạm Thu Hà" in card["text"]
    assert "MQL (open)" in card["text"]
    [found] = await driver.services.contacts.find(SYSTEM, "+84987111222")
    assert (found.company, found.contact.source) == ("Công ty Sao Mai", "Zalo")
    assert found.owner is not None
    assert found.owner.telegram_id == LAN


async def test_new_with_a_known_phone_offers_the_existing_contact(
    driver: Driver, team: Team
) -> None:
    await driver.ask(LAN, "/new")
    await driver.ask(LAN, "An again")
    [offer] = await driver.ask(LAN, "+84 912 345 678")
    assert "already has that phone" in offer["text"]
    [card] = await press(driver, LAN, offer, "Open")
    assert "Nguyễn Văn An" in card["text"]
    assert len(await driver.services.contacts.find(SYSTEM, "an again")) == 0


async def test_new_can_be_cancelled_at_any_step(driver: Driver, team: Team) -> None:
    await driver.ask(LAN, "/new")
    await driver.ask(LAN, "Nobody")
    [cancelled] = await driver.ask(LAN, "/cancel")
    assert "Cancelled" in cancelled["text"]
    [search] = await driver.ask(LAN, "nobody")  # plain text searches again
    assert "Nothing found" in search["text"]


async def test_a_manager_assigns_a_new_contact_to_a_team_member(driver: Driver, team: Team) -> None:
    await driver.ask(MANAGER, "/new")
    await driver.ask(MANAGER, "Lead for Lan")
    await driver.ask(MANAGER, "-")
    [source] = await driver.ask(MANAGER, "-")
    [stage] = await press(driver, MANAGER, source, "Skip")
    [owner] = await press(driver, MANAGER, stage, "Lead")
    assert "Otto" not in str(owner["reply_markup"])  # another team's
    await press(driver, MANAGER, owner, "Lan")
    [found] = await driver.services.contacts.find(SYSTEM, "lead for lan")
    assert found.owner is not None
    assert found.owner.telegram_id == LAN


async def test_an_admin_changes_a_role_and_a_team_and_switches_someone_off(
    driver: Driver, team: Team
) -> None:
    await driver.ask(OTTO, "/help")
    [people] = await driver.ask(ADMIN_ID, "/users")
    [lan] = await press(driver, ADMIN_ID, people, "Lan")
    [lan] = await press(driver, ADMIN_ID, lan, "Make manager")
    assert "Role: manager" in lan["text"]
    [teams] = await press(driver, ADMIN_ID, lan, "Team")
    [lan] = await press(driver, ADMIN_ID, teams, "south")
    assert "Team: south" in lan["text"]
    [back] = await press(driver, ADMIN_ID, lan, "Back")
    [otto] = await press(driver, ADMIN_ID, back, "Otto")
    [otto] = await press(driver, ADMIN_ID, otto, "Switch off")
    assert "switched off" in otto["text"]
    [refused] = await driver.ask(OTTO, "/my")
    assert "switched off" in refused["text"]
    changed = await driver.services.users.by_telegram_id(LAN)
    assert changed is not None
    assert (changed.role, changed.team) == (Role.MANAGER, "south")


async def test_an_agent_cannot_use_the_admin_buttons(driver: Driver, team: Team) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    otto = await driver.services.users.by_telegram_id(OTTO)
    assert otto is not None
    _, answer = await click(driver, LAN, card, f"usr:{otto.id}:off:")
    assert answer is not None
    assert "Only admins" in answer["text"]
    otto = await driver.services.users.by_telegram_id(OTTO)
    assert otto is not None
    assert otto.active


async def test_a_button_for_a_stage_deleted_meanwhile_explains_and_changes_nothing(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, card, "Stage")
    await driver.services.stages.delete(SYSTEM, "MQL")
    [fresh], answer = await click(driver, LAN, stages, button(stages, "MQL"))
    assert answer is not None
    assert "deleted" in answer["text"]
    assert "MQL" not in str(fresh["reply_markup"])
    assert await stage_of(driver, team.an) == "Lead"


async def test_an_unexpected_failure_is_apologised_for(driver: Driver, team: Team) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    await driver.fault(
        "editMessageText", 400, count=1, description="Bad Request: BUTTON_DATA_INVALID"
    )
    _, answer = await click(driver, LAN, card, button(card, "Stage"))
    assert answer is not None
    assert "Sorry, something went wrong" in answer["text"]


async def test_a_stage_deleted_while_its_button_was_shown_asks_again_with_every_stage(
    driver: Driver, team: Team
) -> None:
    stages = driver.services.stages
    await stages.rename(SYSTEM, "Lead", "R&D <x>")  # a name that must be escaped
    [card] = await driver.ask(LAN, "nguyen van an")
    [keyboard] = await press(driver, LAN, card, "Stage")
    await stages.delete(SYSTEM, "MQL")
    [asked], answer = await click(driver, LAN, keyboard, button(keyboard, "MQL"))
    assert answer is not None
    assert "MQL was deleted meanwhile" in answer["text"]
    assert "Move Nguyễn Văn An to which stage? (now: R&D <x> (open))" in asked["text"]
    assert "SQL" in str(asked["reply_markup"])
    assert await stage_of(driver, team.an) == "R&D <x>"


async def test_a_button_pressed_on_a_message_the_bot_cannot_edit_answers_anew(
    driver: Driver, team: Team
) -> None:
    """A forged press on the person's own message: the card comes as a new message."""
    sent = await driver.send(LAN, "nguyen van an")
    await driver.handled(sent)
    [card], answer = await click(driver, LAN, sent, f"card:{team.an}:")
    assert answer is not None
    assert "Nguyễn Văn An" in card["text"]
    assert card["message_id"] > sent["message_id"]


async def test_an_old_cancel_button_leaves_the_question_being_asked_now(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    [note_prompt] = await press(driver, LAN, card, "Note")
    await driver.ask(LAN, "/new")
    [reach] = await driver.ask(LAN, "Phan Thị Thu Trang")
    assert "phone or email" in reach["text"]
    _, answer = await click(driver, LAN, note_prompt, button(note_prompt, "Cancel"))
    assert answer is not None
    assert "answered or closed already" in answer["text"]
    [company] = await driver.ask(LAN, "0977 888 999")
    assert "Their company?" in company["text"]


async def test_a_note_or_reason_too_long_is_asked_again_not_dropped(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    await press(driver, LAN, card, "Note")
    [refused] = await driver.ask(LAN, "x" * 4001)
    assert "at most 4000 characters" in refused["text"]
    assert "Send it again" in refused["text"]
    [saved, card] = await driver.ask(LAN, "Gọi lại thứ Hai")
    assert "saved" in saved["text"]
    assert "Gọi lại thứ Hai" in card["text"]

    [stages] = await press(driver, LAN, card, "Stage")
    [reasons] = await press(driver, LAN, stages, "Disqualified")
    await press(driver, LAN, reasons, "Other")
    [refused] = await driver.ask(LAN, "y" * 501)
    assert "at most 500 characters" in refused["text"]
    assert await stage_of(driver, team.an) == "Lead"
    [moved] = await driver.ask(LAN, "Khách chọn bên khác")
    assert "Disqualified (lost)" in moved["text"]
    assert await stage_of(driver, team.an) == "Disqualified"


async def test_a_button_made_stale_by_the_persons_own_change_says_so(
    driver: Driver, team: Team
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    [old] = await press(driver, LAN, card, "Stage")
    [again] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, again, "Stage")
    await press(driver, LAN, stages, "MQL")
    _, answer = await click(driver, LAN, old, button(old, "SQL"))
    assert answer is not None
    assert "You changed this lead since, from another message" in answer["text"]
    assert await stage_of(driver, team.an) == "MQL"
