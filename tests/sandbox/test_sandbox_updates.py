"""Getting updates: long polling and webhooks, with Telegram's confirmation rules."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer


async def test_updates_stay_until_confirmed_by_a_higher_offset(sandbox):
    await sandbox.add_user(42)
    first = await sandbox.say(42, "/start")
    second = await sandbox.say(42, "hello")
    updates = await sandbox.api("getUpdates")
    assert [u["update_id"] for u in updates] == [first["update_id"], second["update_id"]]
    assert updates[0]["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert "entities" not in updates[1]["message"]
    # Receiving is not confirming.
    assert len(await sandbox.api("getUpdates")) == 2
    remaining = await sandbox.api("getUpdates", offset=first["update_id"] + 1)
    assert [u["update_id"] for u in remaining] == [second["update_id"]]
    assert await sandbox.api("getUpdates", offset=second["update_id"] + 1) == []


async def test_limit_caps_the_batch(sandbox):
    await sandbox.add_user(42)
    for text in ("a", "b", "c"):
        await sandbox.say(42, text)
    updates = await sandbox.api("getUpdates", limit=2)
    assert [u["message"]["text"] for u in updates] == ["a", "b"]


async def test_negative_offset_keeps_only_the_latest_updates(sandbox):
    await sandbox.add_user(42)
    for text in ("a", "b", "c"):
        await sandbox.say(42, text)
    updates = await sandbox.api("getUpdates", offset=-1)
    assert [u["message"]["text"] for u in updates] == ["c"]


async def test_long_poll_times_out_empty(sandbox):
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await sandbox.api("getUpdates", timeout=1) == []
    assert loop.time() - started >= 0.9


async def test_long_poll_returns_as_soon_as_an_update_arrives(sandbox):
    await sandbox.add_user(42)
    polling = asyncio.create_task(sandbox.api("getUpdates", timeout=10))
    await asyncio.sleep(0.1)
    assert not polling.done()
    await sandbox.say(42, "hi")
    updates = await asyncio.wait_for(polling, 2)
    assert updates[0]["message"]["text"] == "hi"


async def test_a_newer_poll_ends_the_older_one_with_a_conflict(sandbox):
    older = asyncio.create_task(sandbox.call("getUpdates", timeout=10))
    await asyncio.sleep(0.1)
    await sandbox.api("getUpdates")
    status, body = await asyncio.wait_for(older, 2)
    assert status == 409
    assert body["description"].startswith("Conflict: terminated by other getUpdates request")


async def test_allowed_updates_filters_later_updates(sandbox):
    await sandbox.add_user(42)
    await sandbox.api("getUpdates", allowed_updates=["callback_query"])
    await sandbox.say(42, "ignored")
    assert await sandbox.api("getUpdates") == []


class WebhookReceiver:
    """A bot's webhook endpoint that fails the first `failures` deliveries with 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[dict[str, Any], str | None]] = []
        self.received: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        update = await request.json()
        self.calls.append((update, request.headers.get("X-Telegram-Bot-Api-Secret-Token")))
        if len(self.calls) <= self.failures:
            return web.Response(status=500)
        self.received.append(update)
        self.arrived.set()
        return web.json_response({})


@pytest.fixture
async def receiver() -> Any:
    receiver = WebhookReceiver(failures=2)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    receiver.url = str(server.make_url("/hook"))
    yield receiver
    await server.close()


async def test_webhook_gets_updates_in_order_with_secret_after_retries(sandbox, receiver):
    await sandbox.add_user(42)
    await sandbox.say(42, "first")
    assert await sandbox.api("setWebhook", url=receiver.url, secret_token="s3cret_-token")
    await sandbox.say(42, "second")

    status, body = await sandbox.call("getUpdates")
    assert status == 409
    assert "webhook is active" in body["description"]

    for _ in range(100):
        if len(receiver.received) == 2:
            break
        await asyncio.sleep(0.05)
    assert [u["message"]["text"] for u in receiver.received] == ["first", "second"]
    # Two 500s were retried with the same update; every request carried the secret.
    assert [update["message"]["text"] for update, _ in receiver.calls] == [
        "first",
        "first",
        "first",
        "second",
    ]
    assert {secret for _, secret in receiver.calls} == {"s3cret_-token"}

    info = await sandbox.api("getWebhookInfo")
    assert info["url"] == receiver.url
    assert info["pending_update_count"] == 0
    assert (
        info["last_error_message"] == "Wrong response from the webhook: 500 Internal Server Error"
    )
    assert isinstance(info["last_error_date"], int)


async def test_unreachable_webhook_keeps_updates_pending(sandbox, unused_tcp_port):
    await sandbox.add_user(42)
    await sandbox.api("setWebhook", url=f"http://127.0.0.1:{unused_tcp_port}/hook")
    await sandbox.say(42, "lost?")
    await asyncio.sleep(0.2)
    info = await sandbox.api("getWebhookInfo")
    assert info["pending_update_count"] == 1
    assert info["last_error_message"].startswith("Connection error")
    assert await sandbox.api("deleteWebhook")
    assert [u["message"]["text"] for u in await sandbox.api("getUpdates")] == ["lost?"]


async def test_delete_webhook_can_drop_pending_updates(sandbox, unused_tcp_port):
    await sandbox.add_user(42)
    await sandbox.api("setWebhook", url=f"http://127.0.0.1:{unused_tcp_port}/hook")
    await sandbox.say(42, "dropped")
    assert await sandbox.api("deleteWebhook", drop_pending_updates=True)
    assert await sandbox.api("getUpdates") == []
    assert (await sandbox.api("getWebhookInfo"))["url"] == ""


async def test_webhook_secret_must_use_allowed_characters(sandbox):
    status, description = await sandbox.refused(
        "setWebhook", url="https://example.org/hook", secret_token="no spaces"
    )
    assert (status, description) == (
        400,
        "Bad Request: bad webhook: secret token contains unallowed characters",
    )


async def test_an_update_can_be_delivered_again_unchanged(sandbox):
    await sandbox.add_user(42)
    sent = await sandbox.say(42, "hello")
    [first] = await sandbox.api("getUpdates")
    await sandbox.api("getUpdates", offset=sent["update_id"] + 1)
    assert await sandbox.user_side("redeliver", update_id=sent["update_id"]) == {
        "update_id": sent["update_id"]
    }
    assert await sandbox.api("getUpdates") == [first]
    response = await sandbox.client.post("/sandbox/redeliver", json={"update_id": 999})
    assert response.status == 404


class HoldingReceiver:
    """A webhook endpoint that holds each request open until the test lets it go (or lets all go
    from then on), and logs when each update arrived and when it was answered."""

    def __init__(self) -> None:
        self.holding = True
        self.log: list[tuple[str, str]] = []  # ("arrived" | "answered", message text)
        self.holds: list[asyncio.Event] = []  # one a request, in the order they arrived
        self.open = 0
        self.most_open = 0
        self.changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        text = (await request.json())["message"]["text"]
        hold = asyncio.Event()
        async with self.changed:
            self.log.append(("arrived", text))
            self.holds.append(hold)
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            self.changed.notify_all()
        if self.holding:
            await hold.wait()
        async with self.changed:
            self.log.append(("answered", text))
            self.open -= 1
            self.changed.notify_all()
        return web.json_response({})

    async def until(self, condition: Any) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(condition), 10)

    def arrived(self) -> list[str]:
        return [text for event, text in self.log if event == "arrived"]

    def let_all_go(self) -> None:
        self.holding = False
        for hold in self.holds:
            hold.set()


@pytest.fixture
async def holding_receiver() -> Any:
    receiver = HoldingReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    receiver.url = str(server.make_url("/hook"))  # type: ignore[attr-defined]
    yield receiver
    receiver.let_all_go()
    await server.close()


async def test_webhook_delivers_to_several_chats_at_once_and_to_each_chat_in_order(
    sandbox, holding_receiver
):
    receiver = holding_receiver
    for user_id in (1, 2, 3, 4):
        await sandbox.add_user(user_id)
        for letter in "ab":
            await sandbox.say(user_id, f"{user_id}{letter}")
    await sandbox.api("setWebhook", url=receiver.url, max_connections=3)
    assert (await sandbox.api("getWebhookInfo"))["max_connections"] == 3

    # Three chats' first updates are in flight together; "1b" waits for "1a" to be answered
    # although it was queued before "2a".
    await receiver.until(lambda: receiver.open == 3)
    assert receiver.arrived() == ["1a", "2a", "3a"]

    # From now on every request is answered at once: all arrive, and each chat's second update
    # only after its first was answered.
    receiver.let_all_go()
    await receiver.until(lambda: len(receiver.arrived()) == 8 and receiver.open == 0)
    assert sorted(receiver.arrived()) == [f"{u}{letter}" for u in (1, 2, 3, 4) for letter in "ab"]
    for user_id in (1, 2, 3, 4):
        answered_first = receiver.log.index(("answered", f"{user_id}a"))
        assert answered_first < receiver.log.index(("arrived", f"{user_id}b"))
    assert receiver.most_open <= 3
    info = await sandbox.api("getWebhookInfo")
    assert info["pending_update_count"] == 0


async def test_webhook_with_one_connection_delivers_one_update_at_a_time(sandbox, holding_receiver):
    receiver = holding_receiver
    for user_id in (1, 2, 3):
        await sandbox.add_user(user_id)
        await sandbox.say(user_id, f"{user_id}a")
    await sandbox.api("setWebhook", url=receiver.url, max_connections=1)
    for delivered in range(3):
        # The next update comes only once the one before was answered.
        await receiver.until(lambda n=delivered: len(receiver.holds) == n + 1)
        assert receiver.open == 1
        receiver.holds[delivered].set()
    await receiver.until(lambda: receiver.open == 0)
    assert receiver.arrived() == ["1a", "2a", "3a"]
    assert receiver.most_open == 1


async def test_webhook_connections_are_kept_within_telegrams_range(sandbox, holding_receiver):
    for asked, given in ((0, 1), (1000, 100)):
        await sandbox.api("setWebhook", url=holding_receiver.url, max_connections=asked)
        assert (await sandbox.api("getWebhookInfo"))["max_connections"] == given
    await sandbox.api("setWebhook", url=holding_receiver.url)
    assert (await sandbox.api("getWebhookInfo"))["max_connections"] == 40


async def test_setting_the_same_webhook_again_does_not_deliver_an_update_twice(
    sandbox, holding_receiver
):
    # Every worker of a bot sets the webhook when it starts; one starting while another
    # handles an update must not have that update delivered a second time.
    receiver = holding_receiver
    await sandbox.add_user(1)
    await sandbox.say(1, "first")
    await sandbox.api("setWebhook", url=receiver.url, secret_token="s")
    await receiver.until(lambda: receiver.open == 1)
    assert await sandbox.api("setWebhook", url=receiver.url, secret_token="s")
    await sandbox.say(1, "second")
    receiver.let_all_go()
    await receiver.until(lambda: len(receiver.arrived()) == 2 and receiver.open == 0)
    assert receiver.arrived() == ["first", "second"]


async def test_a_changed_webhook_gets_the_update_in_flight_again(sandbox, holding_receiver):
    receiver = holding_receiver
    await sandbox.add_user(1)
    await sandbox.say(1, "first")
    await sandbox.api("setWebhook", url=receiver.url, secret_token="s")
    await receiver.until(lambda: receiver.open == 1)
    await sandbox.api("setWebhook", url=receiver.url, secret_token="t")
    await receiver.until(lambda: len(receiver.arrived()) == 2)
    assert receiver.arrived() == ["first", "first"]
