"""The bot runs against the sandbox exactly as against Telegram, by polling and by webhook."""

from __future__ import annotations

import json

import aiohttp
import pytest

from bot.entrypoints import SANDBOX_TOKEN, Sandbox
from tests.e2e.conftest import ADMIN_ID, Driver, eventually


async def test_start_is_answered(driver: Driver) -> None:
    await driver.user(ADMIN_ID, "Quân")
    [reply] = await driver.ask(ADMIN_ID, "/start")
    assert "Hello, Admin 1001" in reply["text"]
    assert "/find" in reply["text"]


async def test_help_is_answered(driver: Driver) -> None:
    await driver.user(ADMIN_ID)
    [reply] = await driver.ask(ADMIN_ID, "/help")
    assert "/new" in reply["text"]


async def test_a_reply_refused_twice_for_flood_control_arrives_once(driver: Driver) -> None:
    await driver.user(ADMIN_ID)
    await driver.fault("sendMessage", 429, count=2, retry_after=1)
    [reply] = await driver.ask(ADMIN_ID, "/help")
    assert "/find" in reply["text"]
    attempts = await driver.requests("sendMessage")
    assert len(attempts) == 3  # two refused, one delivered


@pytest.mark.parametrize("failure", [502, "drop"])
async def test_a_reply_survives_server_errors_and_dropped_connections(
    driver: Driver, failure: int | str
) -> None:
    await driver.user(ADMIN_ID)
    await driver.fault("sendMessage", failure, count=2)
    replies = await driver.ask(ADMIN_ID, "/help")
    assert len(replies) == 1


@pytest.mark.parametrize("bot_mode", ["webhook"], indirect=True)
async def test_the_webhook_refuses_a_wrong_secret(driver: Driver) -> None:
    info = await driver.post(f"/bot{SANDBOX_TOKEN}/getWebhookInfo")
    url = info["result"]["url"]
    update = {
        "update_id": 99,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 1, "type": "private"},
            "text": "/start",
        },
    }
    async with aiohttp.ClientSession() as http:
        for secret in ("wrong", None):
            headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
            async with http.post(url, json=update, headers=headers) as response:
                assert response.status == 401


@pytest.mark.parametrize("bot_mode", ["polling"], indirect=True)
async def test_stopping_the_bot_lets_an_update_in_flight_finish(
    driver: Driver, sandbox_of_driver: Sandbox
) -> None:
    await driver.user(ADMIN_ID)
    # The reply is held back by flood control for a second; the bot is stopped meanwhile.
    await driver.fault("sendMessage", 429, count=1, retry_after=1)
    sent = await driver.send(ADMIN_ID, "/help")

    async def replying() -> bool:  # the bot is handling it: its reply was refused once
        return bool(await driver.requests("sendMessage"))

    await eventually(replying, "replying")
    await sandbox_of_driver.stop_bot()
    # Stopping returned only once the reply was out: it is there without waiting for it.
    assert len(await driver.requests("sendMessage")) == 2
    [reply] = await driver.replies(ADMIN_ID, sent["message_id"])
    assert "/find" in reply["text"]


async def test_the_command_menu_is_published_per_language_and_for_admins(driver: Driver) -> None:
    calls = [call["params"] for call in await driver.requests("setMyCommands")]
    languages = {call.get("language_code") for call in calls}
    assert {"en", "vi", "zh"} <= languages
    admin_menus = [c for c in calls if _scope(c).get("chat_id") == ADMIN_ID]
    assert admin_menus
    assert "users" in str(admin_menus[-1]["commands"])


def _scope(params: dict[str, object]) -> dict[str, object]:
    scope = params.get("scope") or {}
    return json.loads(scope) if isinstance(scope, str) else dict(scope)  # type: ignore[arg-type]
