"""Injected failures, so tests can prove a bot survives Telegram's bad moments."""

from __future__ import annotations

import aiohttp
import pytest


async def test_rate_limit_twice_then_success(sandbox):
    chat_id = await sandbox.started_chat()
    await sandbox.user_side("faults", method="sendMessage", error_code=429, retry_after=3, count=2)
    for _ in range(2):
        status, body = await sandbox.call("sendMessage", chat_id=chat_id, text="hi")
        assert status == 429
        assert body == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 3",
            "parameters": {"retry_after": 3},
        }
    await sandbox.api("sendMessage", chat_id=chat_id, text="hi")
    chat = await sandbox.chat(chat_id)
    assert [m["text"] for m in chat["messages"] if m["from"] == "bot"] == ["hi"]


async def test_server_error_with_custom_description(sandbox):
    await sandbox.user_side(
        "faults", method="getMe", error_code=502, description="Bad Gateway", count=1
    )
    assert await sandbox.refused("getMe") == (502, "Bad Gateway")
    await sandbox.api("getMe")


async def test_dropped_connection_gets_no_response(sandbox):
    await sandbox.user_side("faults", method="getUpdates", error_code="drop")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await sandbox.call("getUpdates")
    assert await sandbox.api("getUpdates") == []


async def test_faults_can_be_inspected_and_cleared(sandbox):
    await sandbox.user_side("faults", method="sendMessage", error_code=403, count=5)
    listing = await (await sandbox.client.get("/sandbox/faults")).json()
    assert [(f["method"], f["error_code"], f["count"]) for f in listing["faults"]] == [
        ("sendMessage", 403, 5)
    ]
    await sandbox.client.delete("/sandbox/faults")
    assert (await (await sandbox.client.get("/sandbox/faults")).json())["faults"] == []


async def test_fault_for_unknown_method_is_refused(sandbox):
    response = await sandbox.client.post(
        "/sandbox/faults", json={"method": "sendTelepathy", "error_code": 500}
    )
    assert response.status == 400


async def test_request_log_shows_what_the_bot_sent_including_refusals(sandbox):
    chat_id = await sandbox.started_chat()
    await sandbox.user_side("faults", method="sendMessage", error_code=429, retry_after=1)
    await sandbox.call("sendMessage", chat_id=chat_id, text="first try")
    await sandbox.api("sendMessage", chat_id=chat_id, text="second try")
    await sandbox.api("getMe")
    log = await (await sandbox.client.get("/sandbox/requests?method=sendMessage")).json()
    entries = log["requests"]
    assert [entry["params"]["text"] for entry in entries] == ["first try", "second try"]
    assert entries[0]["fault"] == 429
    assert entries[1]["result"]["text"] == "second try"
