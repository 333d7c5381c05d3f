"""The Bot API as a bot sees it: shapes of results and Telegram's refusals."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from typing import Any

import aiohttp
import pytest

KEYBOARD = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}


def png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(header))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


async def test_get_me_describes_the_bot_named_by_the_token(sandbox):
    me = await sandbox.api("getMe")
    assert me["id"] == int(sandbox.token.split(":")[0])
    assert me["is_bot"] is True
    assert me["username"] == f"sandbox_{me['id']}_bot"


async def test_each_token_is_its_own_bot(sandbox):
    status, body = await sandbox.call("getMe", token="777:other-Bot_token")
    assert status == 200
    assert body["result"]["id"] == 777


@pytest.mark.parametrize("token", ["nodigits:abc", "123", "123:bad token", "123:"])
async def test_malformed_tokens_are_unauthorized(sandbox, token):
    response = await sandbox.client.get(f"/bot{token}/getMe")
    assert response.status == 401
    assert await response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}


async def test_unknown_method_is_not_found(sandbox):
    assert await sandbox.refused("sendTelepathy") == (404, "Not Found: method not found")


async def test_method_names_are_case_insensitive_and_get_works(sandbox):
    response = await sandbox.client.get(f"/bot{sandbox.token}/getme")
    assert (await response.json())["result"]["is_bot"] is True


async def test_sent_message_has_telegram_shape_and_appears_in_the_chat(sandbox):
    chat_id = await sandbox.started_chat()
    message = await sandbox.api(
        "sendMessage",
        chat_id=chat_id,
        text="<b>Deal</b> won",
        parse_mode="HTML",
        reply_markup=KEYBOARD,
    )
    assert message["from"]["is_bot"] is True
    assert message["chat"] == {"id": chat_id, "type": "private", "first_name": "Lan"}
    assert message["text"] == "Deal won"
    assert message["entities"] == [{"type": "bold", "offset": 0, "length": 4}]
    assert message["reply_markup"] == KEYBOARD
    chat = await sandbox.chat(chat_id, after=1, timeout=2)
    assert [(m["message_id"], m["from"], m["text"]) for m in chat["messages"]] == [
        (message["message_id"], "bot", "Deal won")
    ]


async def test_chat_view_waits_for_the_bot_then_for_quiet(sandbox):
    chat_id = await sandbox.started_chat()

    async def bot_replies_twice():
        await asyncio.sleep(0.1)
        await sandbox.api("sendMessage", chat_id=chat_id, text="one")
        await asyncio.sleep(0.1)
        await sandbox.api("sendMessage", chat_id=chat_id, text="two")

    replying = asyncio.create_task(bot_replies_twice())
    chat = await sandbox.chat(chat_id, after=1, timeout=5)
    await replying
    assert [m["text"] for m in chat["messages"]] == ["one", "two"]


async def test_chat_view_gives_up_after_the_timeout(sandbox):
    chat_id = await sandbox.started_chat()
    loop = asyncio.get_running_loop()
    started = loop.time()
    chat = await sandbox.chat(chat_id, after=1, timeout=0.3)
    assert chat["messages"] == []
    assert loop.time() - started >= 0.3


async def test_form_encoded_and_query_string_calls_are_understood(sandbox):
    chat_id = await sandbox.started_chat()
    form = {"chat_id": str(chat_id), "text": "hello", "reply_markup": '{"inline_keyboard": []}'}
    response = await sandbox.client.post(f"/bot{sandbox.token}/sendMessage", data=form)
    assert (await response.json())["result"]["text"] == "hello"
    response = await sandbox.client.get(
        f"/bot{sandbox.token}/sendMessage", params={"chat_id": str(chat_id), "text": "via GET"}
    )
    assert (await response.json())["result"]["text"] == "via GET"


async def test_unknown_parameters_are_refused_not_ignored(sandbox):
    chat_id = await sandbox.started_chat()
    status, description = await sandbox.refused(
        "sendMessage", chat_id=chat_id, text="hi", parse_mod="HTML"
    )
    assert status == 400
    assert 'unknown parameter "parse_mod"' in description


async def test_missing_text_is_refused(sandbox):
    chat_id = await sandbox.started_chat()
    assert await sandbox.refused("sendMessage", chat_id=chat_id) == (
        400,
        "Bad Request: message text is empty",
    )


@pytest.mark.parametrize("chat_id", [999, "not-a-number", "@someone"])
async def test_unknown_chat_is_not_found(sandbox, chat_id):
    assert await sandbox.refused("sendMessage", chat_id=chat_id, text="hi") == (
        400,
        "Bad Request: chat not found",
    )


async def test_bot_cannot_write_first(sandbox):
    await sandbox.add_user(7)
    status, description = await sandbox.refused("sendMessage", chat_id=7, text="hi")
    assert (status, description) == (403, "Forbidden: bot can't initiate conversation with a user")


async def test_user_who_blocked_the_bot_is_forbidden(sandbox):
    chat_id = await sandbox.started_chat()
    await sandbox.add_user(chat_id, blocked=True)
    assert await sandbox.refused("sendMessage", chat_id=chat_id, text="hi") == (
        403,
        "Forbidden: bot was blocked by the user",
    )
    await sandbox.add_user(chat_id, blocked=False)
    await sandbox.api("sendMessage", chat_id=chat_id, text="hi again")


async def test_text_longer_than_4096_characters_is_refused(sandbox):
    chat_id = await sandbox.started_chat()
    assert await sandbox.refused("sendMessage", chat_id=chat_id, text="x" * 5000) == (
        400,
        "Bad Request: message is too long",
    )
    await sandbox.api("sendMessage", chat_id=chat_id, text="x" * 4096)


async def test_length_counts_utf16_units_of_the_visible_text(sandbox):
    chat_id = await sandbox.started_chat()
    # Each emoji is two UTF-16 units; markup does not count.
    await sandbox.api(
        "sendMessage", chat_id=chat_id, text="<b>" + "😀" * 2048 + "</b>", parse_mode="HTML"
    )
    _status, description = await sandbox.refused(
        "sendMessage", chat_id=chat_id, text="😀" * 2048 + "x"
    )
    assert description == "Bad Request: message is too long"


async def test_caption_longer_than_1024_characters_is_refused(sandbox):
    chat_id = await sandbox.started_chat()
    form = aiohttp.FormData()
    form.add_field("chat_id", str(chat_id))
    form.add_field("caption", "c" * 1025)
    form.add_field("document", b"a,b\n", filename="deals.csv")
    response = await sandbox.client.post(f"/bot{sandbox.token}/sendDocument", data=form)
    body = await response.json()
    assert (response.status, body["description"]) == (
        400,
        "Bad Request: message caption is too long",
    )


@pytest.mark.parametrize("data", ["x" * 65, "é" * 33, ""])
async def test_callback_data_must_be_1_to_64_bytes(sandbox, data):
    chat_id = await sandbox.started_chat()
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": data}]]}
    assert await sandbox.refused(
        "sendMessage", chat_id=chat_id, text="hi", reply_markup=markup
    ) == (400, "Bad Request: BUTTON_DATA_INVALID")


async def test_callback_data_of_exactly_64_bytes_is_fine(sandbox):
    chat_id = await sandbox.started_chat()
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "é" * 32}]]}
    await sandbox.api("sendMessage", chat_id=chat_id, text="hi", reply_markup=markup)


@pytest.mark.parametrize(
    ("markup", "reason"),
    [
        ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
    ],
)
async def test_bad_html_is_refused(sandbox, markup, reason):
    chat_id = await sandbox.started_chat()
    assert await sandbox.refused(
        "sendMessage", chat_id=chat_id, text=markup, parse_mode="HTML"
    ) == (400, f"Bad Request: can't parse entities: {reason}")


async def test_unescaped_markdown_v2_reserved_character_is_refused(sandbox):
    chat_id = await sandbox.started_chat()
    _status, description = await sandbox.refused(
        "sendMessage", chat_id=chat_id, text="Done.", parse_mode="MarkdownV2"
    )
    assert description.startswith("Bad Request: can't parse entities: Character '.' is reserved")
    message = await sandbox.api(
        "sendMessage", chat_id=chat_id, text="*Done*\\.", parse_mode="MarkdownV2"
    )
    assert (message["text"], message["entities"]) == (
        "Done.",
        [{"type": "bold", "offset": 0, "length": 4}],
    )


async def test_identical_edit_is_refused_and_a_real_edit_is_applied(sandbox):
    chat_id = await sandbox.started_chat()
    sent = await sandbox.api("sendMessage", chat_id=chat_id, text="v1", reply_markup=KEYBOARD)
    same = {"chat_id": chat_id, "message_id": sent["message_id"], "text": "v1"}
    assert await sandbox.refused("editMessageText", **same, reply_markup=KEYBOARD) == (
        400,
        "Bad Request: message is not modified: specified new message content and reply markup "
        "are exactly the same as a current content and reply markup of the message",
    )
    # Same text without the keyboard is a change: Telegram drops the keyboard.
    edited = await sandbox.api("editMessageText", **same)
    assert "reply_markup" not in edited
    assert edited["edit_date"] >= sent["date"]


async def test_edit_and_delete_of_unknown_messages_are_refused(sandbox):
    chat_id = await sandbox.started_chat()
    assert await sandbox.refused("editMessageText", chat_id=chat_id, message_id=999, text="x") == (
        400,
        "Bad Request: message to edit not found",
    )
    assert await sandbox.refused("deleteMessage", chat_id=chat_id, message_id=999) == (
        400,
        "Bad Request: message to delete not found",
    )


async def test_deleted_message_cannot_be_edited_and_shows_as_deleted(sandbox):
    chat_id = await sandbox.started_chat()
    sent = await sandbox.api("sendMessage", chat_id=chat_id, text="bye")
    assert await sandbox.api("deleteMessage", chat_id=chat_id, message_id=sent["message_id"])
    assert await sandbox.refused(
        "editMessageText", chat_id=chat_id, message_id=sent["message_id"], text="x"
    ) == (400, "Bad Request: message to edit not found")
    chat = await sandbox.chat(chat_id)
    assert [m["deleted"] for m in chat["messages"]] == [False, True]


async def test_edit_markup_and_caption(sandbox):
    chat_id = await sandbox.started_chat()
    form = aiohttp.FormData()
    form.add_field("chat_id", str(chat_id))
    form.add_field("photo", png(3, 2), filename="chart.png", content_type="image/png")
    response = await sandbox.client.post(f"/bot{sandbox.token}/sendPhoto", data=form)
    photo = (await response.json())["result"]
    target = {"chat_id": chat_id, "message_id": photo["message_id"]}
    edited = await sandbox.api(
        "editMessageCaption", **target, caption="<i>Q3</i>", parse_mode="HTML"
    )
    assert edited["caption"] == "Q3"
    assert edited["caption_entities"] == [{"type": "italic", "offset": 0, "length": 2}]
    edited = await sandbox.api("editMessageReplyMarkup", **target, reply_markup=KEYBOARD)
    assert edited["reply_markup"] == KEYBOARD


async def edit_media(sandbox, chat_id: int, message_id: int, picture: bytes, **media) -> Any:
    form = aiohttp.FormData()
    form.add_field("chat_id", str(chat_id))
    form.add_field("message_id", str(message_id))
    form.add_field("media", json.dumps({"type": "photo", "media": "attach://chart", **media}))
    form.add_field("reply_markup", json.dumps(KEYBOARD))
    form.add_field("chart", picture, filename="chart.png", content_type="image/png")
    response = await sandbox.client.post(f"/bot{sandbox.token}/editMessageMedia", data=form)
    return await response.json()


async def test_edit_media_replaces_the_photo_or_turns_a_text_into_one(sandbox):
    chat_id = await sandbox.started_chat()
    menu = await sandbox.api("sendMessage", chat_id=chat_id, text="Choose a report")
    body = await edit_media(
        sandbox,
        chat_id,
        menu["message_id"],
        png(960, 720),
        caption="<b>Funnel</b>",
        parse_mode="HTML",
    )
    edited = body["result"]
    assert "text" not in edited
    assert edited["caption"] == "Funnel"
    assert edited["caption_entities"] == [{"type": "bold", "offset": 0, "length": 6}]
    assert (edited["photo"][0]["width"], edited["photo"][0]["height"]) == (960, 720)
    assert edited["reply_markup"] == KEYBOARD

    again = (await edit_media(sandbox, chat_id, menu["message_id"], png(640, 480)))["result"]
    assert again["photo"][0]["width"] == 640
    assert again["photo"][0]["file_id"] != edited["photo"][0]["file_id"]
    assert "caption" not in again
    chat = await sandbox.chat(chat_id)
    [shown] = [m for m in chat["messages"] if m["message_id"] == menu["message_id"]]
    assert shown["edited"] is True
    assert shown["photo"] is not None
    assert shown["text"] is None


async def test_edit_media_is_refused_without_the_file_or_with_an_unemulated_kind(sandbox):
    chat_id = await sandbox.started_chat()
    sent = await sandbox.api("sendMessage", chat_id=chat_id, text="x")
    target = {"chat_id": chat_id, "message_id": sent["message_id"]}
    status, description = await sandbox.refused(
        "editMessageMedia", **target, media={"type": "photo", "media": "attach://gone"}
    )
    assert (status, "attach://gone" in description) == (400, True)
    status, description = await sandbox.refused(
        "editMessageMedia", **target, media={"type": "video", "media": "BAD"}
    )
    assert status == 400
    assert "video" in description
    assert await sandbox.refused("editMessageMedia", **target) == (
        400,
        "Bad Request: media is empty",
    )


async def test_photo_upload_via_attach_and_file_download(sandbox):
    chat_id = await sandbox.started_chat()
    picture = png(640, 480)
    form = aiohttp.FormData()
    form.add_field("chat_id", str(chat_id))
    form.add_field("photo", "attach://chart")
    form.add_field("caption", "Funnel")
    form.add_field("chart", picture, filename="funnel.png", content_type="image/png")
    response = await sandbox.client.post(f"/bot{sandbox.token}/sendPhoto", data=form)
    message = (await response.json())["result"]
    [size] = message["photo"]
    assert (size["width"], size["height"], size["file_size"]) == (640, 480, len(picture))
    assert message["caption"] == "Funnel"

    file = await sandbox.api("getFile", file_id=size["file_id"])
    assert file["file_unique_id"] == size["file_unique_id"]
    download = await sandbox.client.get(f"/file/bot{sandbox.token}/{file['file_path']}")
    assert await download.read() == picture

    again = await sandbox.api("sendPhoto", chat_id=chat_id, photo=size["file_id"])
    assert again["photo"][0]["file_id"] == size["file_id"]


async def test_document_upload_keeps_name_and_type(sandbox):
    chat_id = await sandbox.started_chat()
    form = aiohttp.FormData()
    form.add_field("chat_id", str(chat_id))
    form.add_field("document", b"name,phone\n", filename="contacts.csv")
    response = await sandbox.client.post(f"/bot{sandbox.token}/sendDocument", data=form)
    document = (await response.json())["result"]["document"]
    assert document["file_name"] == "contacts.csv"
    assert document["mime_type"] == "text/csv"
    assert document["file_size"] == len(b"name,phone\n")


async def test_missing_attachment_and_unknown_file_id_are_refused(sandbox):
    chat_id = await sandbox.started_chat()
    status, description = await sandbox.refused(
        "sendDocument", chat_id=chat_id, document="attach://nothing"
    )
    assert status == 400
    assert "attach://nothing" in description
    assert await sandbox.refused("sendDocument", chat_id=chat_id, document="BAD-ID") == (
        400,
        "Bad Request: wrong file identifier/HTTP URL specified",
    )


async def test_photo_that_is_not_a_picture_is_refused(sandbox):
    chat_id = await sandbox.started_chat()
    form = aiohttp.FormData()
    form.add_field("chat_id", str(chat_id))
    form.add_field("photo", b"not a picture", filename="x.png")
    response = await sandbox.client.post(f"/bot{sandbox.token}/sendPhoto", data=form)
    assert (await response.json())["description"] == "Bad Request: IMAGE_PROCESS_FAILED"


async def test_callback_query_answered_twice_is_refused(sandbox):
    chat_id = await sandbox.started_chat()
    sent = await sandbox.api("sendMessage", chat_id=chat_id, text="pick", reply_markup=KEYBOARD)
    click = await sandbox.user_side(
        "click", user_id=chat_id, message_id=sent["message_id"], data="go"
    )
    query_id = click["callback_query_id"]
    assert await sandbox.api("answerCallbackQuery", callback_query_id=query_id, text="Saved")
    assert await sandbox.refused("answerCallbackQuery", callback_query_id=query_id) == (
        400,
        "Bad Request: query is too old and response timeout expired or query ID is invalid",
    )
    chat = await sandbox.chat(chat_id, after=sent["message_id"])
    assert chat["callback_answers"] == [
        {
            "callback_query_id": query_id,
            "message_id": sent["message_id"],
            "data": "go",
            "text": "Saved",
            "show_alert": False,
            "url": None,
        }
    ]


async def test_late_callback_answer_is_refused(sandbox):
    sandbox.emulator.callback_answer_timeout = 0.1
    chat_id = await sandbox.started_chat()
    sent = await sandbox.api("sendMessage", chat_id=chat_id, text="pick", reply_markup=KEYBOARD)
    click = await sandbox.user_side(
        "click", user_id=chat_id, message_id=sent["message_id"], data="go"
    )
    await asyncio.sleep(0.15)
    _status, description = await sandbox.refused(
        "answerCallbackQuery", callback_query_id=click["callback_query_id"]
    )
    assert description.startswith("Bad Request: query is too old")


async def test_callback_answer_text_over_200_characters_is_refused(sandbox):
    chat_id = await sandbox.started_chat()
    sent = await sandbox.api("sendMessage", chat_id=chat_id, text="pick", reply_markup=KEYBOARD)
    click = await sandbox.user_side(
        "click", user_id=chat_id, message_id=sent["message_id"], data="go"
    )
    status, _ = await sandbox.refused(
        "answerCallbackQuery", callback_query_id=click["callback_query_id"], text="t" * 201
    )
    assert status == 400
    # The refused answer did not use the query up.
    assert await sandbox.api(
        "answerCallbackQuery", callback_query_id=click["callback_query_id"], text="t" * 200
    )


async def test_commands_are_kept_per_scope_and_language(sandbox):
    commands = [{"command": "start", "description": "Start"}]
    assert await sandbox.api("setMyCommands", commands=commands, language_code="vi")
    assert await sandbox.api("getMyCommands", language_code="vi") == commands
    assert await sandbox.api("getMyCommands") == []
    assert await sandbox.api("deleteMyCommands", language_code="vi")
    assert await sandbox.api("getMyCommands", language_code="vi") == []
    bad = [{"command": "Start Now", "description": "x"}]
    assert await sandbox.refused("setMyCommands", commands=bad) == (
        400,
        "Bad Request: BOT_COMMAND_INVALID",
    )


async def test_chat_action_and_close_are_harmless(sandbox):
    chat_id = await sandbox.started_chat()
    assert await sandbox.api("sendChatAction", chat_id=chat_id, action="typing")
    assert await sandbox.refused("sendChatAction", chat_id=chat_id, action="dancing") == (
        400,
        "Bad Request: wrong parameter action in request",
    )
    assert await sandbox.api("close") is True
    assert await sandbox.api("logOut") is True
