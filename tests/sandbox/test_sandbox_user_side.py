"""The /sandbox/* routes a test or the web chat uses to play the user."""

from __future__ import annotations

import aiohttp

KEYBOARD = {"inline_keyboard": [[{"text": "Won", "callback_data": "stage:3"}]]}


async def test_click_produces_a_callback_query_with_the_current_message(sandbox):
    chat_id = await sandbox.started_chat()
    sent = await sandbox.api("sendMessage", chat_id=chat_id, text="Stage?", reply_markup=KEYBOARD)
    await sandbox.api("getUpdates", offset=-1)
    click = await sandbox.user_side(
        "click", user_id=chat_id, message_id=sent["message_id"], data="stage:3"
    )
    [update] = await sandbox.api("getUpdates", offset=click["update_id"])
    query = update["callback_query"]
    assert query["id"] == click["callback_query_id"]
    assert query["from"]["id"] == chat_id
    assert query["data"] == "stage:3"
    assert query["message"]["message_id"] == sent["message_id"]
    assert query["message"]["reply_markup"] == KEYBOARD
    assert query["chat_instance"]


async def test_click_accepts_forged_data_but_not_a_missing_message(sandbox):
    chat_id = await sandbox.started_chat()
    sent = await sandbox.api("sendMessage", chat_id=chat_id, text="x", reply_markup=KEYBOARD)
    forged = await sandbox.user_side(
        "click", user_id=chat_id, message_id=sent["message_id"], data="admin:delete-all"
    )
    assert forged["callback_query_id"]
    response = await sandbox.client.post(
        "/sandbox/click", json={"user_id": chat_id, "message_id": 999, "data": "x"}
    )
    assert response.status == 404


async def test_unknown_user_cannot_send(sandbox):
    response = await sandbox.client.post("/sandbox/send", json={"user_id": 5, "text": "hi"})
    assert response.status == 404


async def test_upload_sends_a_document_message(sandbox):
    await sandbox.add_user(42, language_code="vi", username="lan")
    form = aiohttp.FormData()
    form.add_field("user_id", "42")
    form.add_field("caption", "import me")
    form.add_field("file", b"name,phone\nAn,0912345678\n", filename="leads.csv")
    response = await sandbox.client.post("/sandbox/upload", data=form)
    sent = await response.json()
    [update] = await sandbox.api("getUpdates")
    message = update["message"]
    assert update["update_id"] == sent["update_id"]
    assert message["message_id"] == sent["message_id"]
    assert message["from"] == {
        "id": 42,
        "is_bot": False,
        "first_name": "Lan",
        "username": "lan",
        "language_code": "vi",
    }
    assert message["caption"] == "import me"
    document = message["document"]
    assert (document["file_name"], document["mime_type"]) == ("leads.csv", "text/csv")
    file = await sandbox.api("getFile", file_id=document["file_id"])
    download = await sandbox.client.get(f"/file/bot{sandbox.token}/{file['file_path']}")
    assert await download.read() == b"name,phone\nAn,0912345678\n"


async def test_chat_after_reports_new_messages_and_later_edits_of_older_ones(sandbox):
    chat_id = await sandbox.started_chat()
    card = await sandbox.api("sendMessage", chat_id=chat_id, text="card v1", reply_markup=KEYBOARD)
    click = await sandbox.say(chat_id, "/next")
    await sandbox.api(
        "editMessageText", chat_id=chat_id, message_id=card["message_id"], text="card v2"
    )
    reply = await sandbox.api("sendMessage", chat_id=chat_id, text="moved")

    chat = await sandbox.chat(chat_id, after=click["message_id"], timeout=1)
    assert [(m["message_id"], m["text"], m["edited"]) for m in chat["messages"]] == [
        (card["message_id"], "card v2", True),
        (click["message_id"] + 1, "moved", False),
    ]
    assert reply["message_id"] == click["message_id"] + 1
    # The edit happened before "moved" was sent, so it is not newer than that message.
    later = await sandbox.chat(chat_id, after=reply["message_id"])
    assert later["messages"] == []


async def test_chat_since_cursor_reports_each_change_once(sandbox):
    chat_id = await sandbox.started_chat()
    start = await sandbox.chat(chat_id)
    sent = await sandbox.api("sendMessage", chat_id=chat_id, text="v1")
    first = await sandbox.chat(chat_id, since=start["cursor"], timeout=1)
    assert [m["text"] for m in first["messages"]] == ["v1"]
    await sandbox.api("editMessageText", chat_id=chat_id, message_id=sent["message_id"], text="v2")
    second = await sandbox.chat(chat_id, since=first["cursor"], timeout=1)
    assert [(m["text"], m["edited"]) for m in second["messages"]] == [("v2", True)]
    assert (await sandbox.chat(chat_id, since=second["cursor"]))["messages"] == []


async def test_chat_gives_download_urls_for_files(sandbox):
    await sandbox.add_user(42)
    form = aiohttp.FormData()
    form.add_field("user_id", "42")
    form.add_field("file", b"a;b", filename="x.csv")
    await sandbox.client.post("/sandbox/upload", data=form)
    chat = await sandbox.chat(42)
    url = chat["messages"][0]["document"]["url"]
    assert await (await sandbox.client.get(url)).read() == b"a;b"


async def test_reset_forgets_everything(sandbox):
    await sandbox.started_chat()
    await sandbox.user_side("reset")
    assert (await (await sandbox.client.get("/sandbox/users")).json())["users"] == []
    assert await sandbox.api("getUpdates") == []
    log = (await (await sandbox.client.get("/sandbox/requests")).json())["requests"]
    assert [entry["method"] for entry in log] == ["getUpdates"]


async def test_user_side_routes_can_address_another_bot(sandbox):
    other = "555:second-bot"
    await sandbox.add_user(42)
    await sandbox.user_side("send", user_id=42, text="hi other", token=other)
    assert await sandbox.api("getUpdates") == []
    _status, body = await sandbox.call("getUpdates", token=other)
    assert [u["message"]["text"] for u in body["result"]] == ["hi other"]
    assert (await (await sandbox.client.get("/sandbox/bot?bot_id=555")).json())["username"] == (
        "sandbox_555_bot"
    )


async def test_web_chat_page_is_served(sandbox):
    page = await sandbox.client.get("/")
    assert "text/html" in page.headers["Content-Type"]
    assert "chat.js" in await page.text()
    script = await sandbox.client.get("/sandbox/static/chat.js")
    assert script.status == 200
