"""The bot runs against the sandbox exactly as against Telegram, by polling and by webhook."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest

from bot.container import build_services
from bot.entrypoints import (
    SANDBOX_TOKEN,
    Sandbox,
    WebhookServer,
    sandbox_state_file,
    serve_sandbox,
)
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import Role
from tests.e2e.conftest import ADMIN_ID, WEBHOOK_SECRET, Driver, eventually, in_this_process
from tests.e2e.workers import free_port


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


async def test_the_webhook_asks_telegram_for_the_configured_connections(
    sandbox_of_driver: Sandbox,
) -> None:
    sandbox = sandbox_of_driver
    await sandbox.stop_bot()
    settings = sandbox.services.settings.model_copy(
        update={"telegram_api_base": sandbox.url, "webhook_max_connections": 7}
    )
    webhook = WebhookServer(
        build_services(settings, sandbox.services.engine),
        token=sandbox.token,
        secret=WEBHOOK_SECRET,
        public_url=None,
        host="127.0.0.1",
        port=0,
    )
    await webhook.start()
    try:
        url = f"{sandbox.url}/bot{sandbox.token}/getWebhookInfo"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            info = (await response.json())["result"]
        assert info["max_connections"] == 7
    finally:
        await webhook.stop()


async def test_several_people_writing_at_once_are_all_answered(driver: Driver) -> None:
    """Behind the webhook their updates are handled side by side (max_connections 40)."""
    people = range(2101, 2109)
    for telegram_id in people:
        await driver.services.users.add(
            SYSTEM, f"Agent {telegram_id}", Role.AGENT, telegram_id=telegram_id
        )
        await driver.user(telegram_id)
    sent = {telegram_id: await driver.send(telegram_id, "/help") for telegram_id in people}
    for telegram_id, message in sent.items():
        await driver.handled(message)
        [reply] = await driver.replies(telegram_id, message["message_id"])
        assert "/find" in reply["text"]


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


async def test_a_restarted_sandbox_goes_on_where_it_was(e2e_settings: Settings) -> None:
    """`stagekeeper sandbox` stopped and started again on the same database: the web chat still
    knows its people, and the first message after the restart is answered (its update id is
    not one the bot's ledger has taken already)."""
    update_ids: list[int] = []
    people = []
    async with aiohttp.ClientSession() as http:
        for run in ("before", "after"):
            services = build_services(e2e_settings)
            sandbox = Sandbox(services, port=0)
            await sandbox.start()
            try:
                assert sandbox.runtime is not None
                driver = Driver(sandbox.url, http, services, sandbox.runtime)
                if run == "before":
                    await driver.user(ADMIN_ID, "Quân")
                    await driver.ask(ADMIN_ID, "/start")
                sent = await driver.post("/sandbox/send", user_id=ADMIN_ID, text="/help")
                update_ids.append(sent["update_id"])
                await driver.handled(sent)
                [reply] = await driver.replies(ADMIN_ID, sent["message_id"])
                assert "/find" in reply["text"]
                async with http.get(f"{sandbox.url}/sandbox/users") as response:
                    people.append((await response.json())["users"])
            finally:
                await sandbox.stop()
                await services.close()
    assert update_ids[1] > update_ids[0]
    assert people[1] == people[0]
    assert [person["first_name"] for person in people[1]] == ["Quân"]


@pytest.mark.parametrize(
    ("database_url", "state_file"),
    [
        ("sqlite+aiosqlite:///stagekeeper-sandbox.db", "stagekeeper-sandbox.db-sandbox.json"),
        ("sqlite+aiosqlite:////srv/crm/team.db", "/srv/crm/team.db-sandbox.json"),
        ("postgresql+asyncpg://crm:pw@db/crm", "stagekeeper-sandbox.json"),
        ("sqlite+aiosqlite://", None),
        ("sqlite+aiosqlite:///:memory:", None),
    ],
)
def test_the_sandbox_keeps_its_state_beside_a_sqlite_database(
    database_url: str, state_file: str | None
) -> None:
    expected = None if state_file is None else Path(state_file)
    assert sandbox_state_file(database_url) == expected


@in_this_process
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


async def test_the_demo_sandbox_says_it_is_loading_and_offers_its_people_by_full_name(
    e2e_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`stagekeeper sandbox --demo`: a line before the demo's data loads (it takes a while),
    and the web chat's people under their whole names ("Emily Carter", "Nguyễn Thị Mai")."""
    services = build_services(e2e_settings)
    port = free_port()
    serving = asyncio.create_task(serve_sandbox(services, host="127.0.0.1", port=port, demo=True))
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            users: list[str] = []

            async def listed() -> bool:
                if serving.done():
                    serving.result()  # why it stopped
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get("/sandbox/users") as response:
                        users[:] = [u["first_name"] for u in (await response.json())["users"]]
                return bool(users)

            await eventually(listed, "the sandbox listening")
        assert "Emily Carter" in users
        assert any(name.count(" ") >= 2 for name in users)  # a Vietnamese name, whole
        printed = capsys.readouterr().out
        assert printed.index("loading the demo data") < printed.index("open http://")
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        await services.close()
