"""Leads that arrive by themselves (ISSUE 7), through the HTTP API of the sandbox (polling) or
of the webhook server (webhook): the lead's owner is told in Telegram at once, with stage
buttons that work; automation's moves and refusals are on the card."""

from __future__ import annotations

import pytest

from bot.settings import Settings
from domain.access import SYSTEM
from tests.e2e.conftest import ADMIN_ID, LAN, Driver, Team, eventually, press, stage_of, until


@pytest.fixture
def e2e_settings(e2e_settings: Settings) -> Settings:
    return e2e_settings.model_copy(update={"leads_team": "north"})


@pytest.fixture
async def key(driver: Driver) -> str:
    _, secret = await driver.services.api_keys.create(SYSTEM, "website")
    return secret


async def test_a_form_for_a_new_phone_makes_a_lead_whose_owner_moves_it_from_the_message(
    driver: Driver, team: Team, key: str
) -> None:
    await driver.ask(LAN, "/start")  # Telegram lets a bot write only to people who started it
    since = await driver.cursor(LAN)
    status, body = await driver.event(
        key, event="form_submitted", phone="0987 654 321", name="Phạm Thu", source="Landing"
    )
    assert status == 200, body
    contact = body["contact"]
    assert (contact["stage"]["name"], contact["owner"], contact["source"]) == (
        "Lead",
        "Lan",
        "Landing",
    )
    [told] = await until(driver, LAN, since, "A new lead for you.")  # sent in the background
    assert "Phạm Thu" in told["text"]
    [moved] = await press(driver, LAN, told, "MQL")
    assert "Stage: MQL" in moved["text"]
    assert await stage_of(driver, contact["id"]) == "MQL"


async def test_revenue_twice_ends_in_loyal_customer(driver: Driver, team: Team, key: str) -> None:
    for amount in (1_500_000, 800_000):
        status, body = await driver.event(
            key, event="revenue_booked", external_id="INV-CUST-9", value=amount
        )
        assert status == 200, body
    assert body["contact"]["stage"]["name"] == "Loyal customer"
    assert await stage_of(driver, body["contact"]["id"]) == "Loyal customer"


async def test_revenue_for_a_lost_contact_leaves_it_lost_and_the_card_says_why(
    driver: Driver, team: Team, key: str
) -> None:
    await driver.services.contacts.set_stage(
        SYSTEM,
        team.an,
        (await driver.services.contacts.stage_by_name("Disqualified")).id,
        reason="Price",
    )
    status, body = await driver.event(key, event="revenue_booked", phone="+84912345678")
    assert status == 200, body
    assert (body["outcome"], body["contact"]["stage"]["name"]) == ("declined", "Disqualified")
    assert "never moves a won or lost contact" in body["detail"]
    [card] = await driver.ask(ADMIN_ID, "nguyen van an")
    assert "revenue_booked: declined — The contact is lost (Disqualified)" in card["text"]


async def test_a_replayed_idempotency_key_changes_nothing_and_tells_nobody_again(
    driver: Driver, team: Team, key: str
) -> None:
    await driver.ask(LAN, "/start")
    event = {"event": "form_submitted", "email": "thu@example.vn", "idempotency_key": "f-1"}
    since = await driver.cursor(LAN)
    status, first = await driver.event(key, **event)
    assert status == 200, first
    await until(driver, LAN, since, "A new lead for you.")
    since = await driver.cursor(LAN)
    status, again = await driver.event(key, **event)
    assert (status, again["replayed"], again["event_id"]) == (200, True, first["event_id"])
    assert again["contact"]["version"] == first["contact"]["version"]
    # Nothing to wait for: whatever the notifier could send would be out by the time a notice
    # for the next event (queued after any for the replay) is.
    status, _ = await driver.event(key, event="form_submitted", email="next@example.vn")
    assert status == 200
    [told] = await until(driver, LAN, since, "A new lead for you.")
    assert "next@example.vn" in told["text"]


async def test_a_revoked_key_is_refused(driver: Driver, team: Team, key: str) -> None:
    await driver.services.api_keys.revoke(SYSTEM, "website")
    status, body = await driver.event(key, event="page_viewed", phone="0987 654 321")
    assert (status, body["error"]) == (401, "unauthorized")


async def test_an_admin_points_an_event_at_another_stage_with_buttons(
    driver: Driver, team: Team, key: str
) -> None:
    [refused] = await driver.ask(LAN, "/rules")
    assert "Only admins" in refused["text"]
    [table] = await driver.ask(ADMIN_ID, "/rules")
    assert "form_submitted → Lead · default" in table["text"]
    assert "revenue_booked (again) → Loyal customer · default" in table["text"]
    assert "New leads go in turn to the active agents of the team north." in table["text"]
    [choices] = await press(driver, ADMIN_ID, table, "form_submitted")
    [table] = await press(driver, ADMIN_ID, choices, "MQL")
    assert "form_submitted → MQL" in table["text"]
    status, body = await driver.event(key, event="form_submitted", email="new@example.vn")
    assert (status, body["contact"]["stage"]["name"]) == (200, "MQL")
    [choices] = await press(driver, ADMIN_ID, table, "form_submitted")
    [table] = await press(driver, ADMIN_ID, choices, "Default")
    assert "form_submitted → Lead · default" in table["text"]


async def test_an_admin_creates_a_key_in_chat_and_revokes_it(
    driver: Driver, team: Team, bot_mode: str
) -> None:
    [created] = await driver.ask(ADMIN_ID, "/apikeys create landing")
    assert "it is not shown again" in created["text"]
    [secret] = [word for word in created["text"].split() if word.startswith("sk_")]
    status, _ = await driver.event(secret, event="page_viewed", phone="0987 111 222")
    assert status == 200
    [listing] = await driver.ask(ADMIN_ID, "/apikeys")
    assert "landing — " + secret[:11] + "…" in listing["text"]
    [confirm] = await press(driver, ADMIN_ID, listing, "landing")
    assert "Revoke the key landing?" in confirm["text"]
    [listing] = await press(driver, ADMIN_ID, confirm, "Revoke")
    assert "revoked" in listing["text"]

    async def refused() -> bool:
        status, _ = await driver.event(secret, event="page_viewed", phone="0987 111 222")
        return status == 401

    if bot_mode == "workers":  # the other worker trusts it for TRUSTED_FOR still
        await eventually(refused, "the revoked key refused by one worker")
        await eventually(refused, "the revoked key refused by the other")
    else:
        assert await refused()


async def test_flood_control_delays_the_notice_and_loses_nothing(
    driver: Driver, team: Team, key: str
) -> None:
    await driver.ask(LAN, "/start")
    await driver.fault("sendMessage", 429, count=1, retry_after=1)
    since = await driver.cursor(LAN)
    status, _ = await driver.event(key, event="form_submitted", phone="0987 333 444")
    assert status == 200
    await until(driver, LAN, since, "A new lead for you.")
    calls = await driver.requests("sendMessage")
    assert calls[-2].get("fault") == 429
    assert calls[-1]["time"] - calls[-2]["time"] >= 1.0

    async def none_pending() -> bool:  # marked sent right after Telegram took it
        return not await driver.services.events.pending_notices()

    await eventually(none_pending, "every notice marked sent")
