"""The user side of the emulated Telegram: what a person (or a test) does in a chat with a bot.

Routes take an optional "token" or "bot_id" (JSON field, form field or query parameter) naming the
bot; without one they talk to the emulator's default bot.

Chat view rule (GET /sandbox/chat/{user_id}): every creation, edit or deletion of a message and
every callback answer in a chat takes the next number of that chat's event sequence. `after=N`
reports the messages created or changed after message N was created, so an edit of an older
message made after message N shows up, and an edit made before it does not. `since=CURSOR`
reports what changed after that sequence point; each response carries the current `cursor`, so
a client polling with `since` sees every change exactly once (the web chat does this).
"""

from __future__ import annotations

import asyncio
import http
import json
import secrets
from typing import Any, NoReturn

from aiohttp import BodyPartReader, web

from sandbox.errors import ApiError
from sandbox.files import media_type
from sandbox.methods import find_method
from sandbox.state import (
    BotAccount,
    Conversation,
    Fault,
    PendingCallbackQuery,
    SandboxState,
    StoredFile,
    StoredMessage,
    User,
)

QUIET_PERIOD = 0.2  # seconds the bot must stay silent before a chat view is returned
MAX_CHAT_WAIT = 60.0


_ERRORS: dict[int, type[web.HTTPError]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    404: web.HTTPNotFound,
}


def fail(status: int, message: str) -> NoReturn:
    raise _ERRORS[status](text=json.dumps({"error": message}), content_type="application/json")


async def json_body(request: web.Request) -> dict[str, Any]:
    """Accepts a JSON object or an HTML form, so curl and fetch() alike can drive the chat."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            fail(400, "the body is not valid JSON")
        if not isinstance(body, dict):
            fail(400, "the body must be a JSON object")
        return body
    return dict(await request.post())


def integer(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        fail(400, f"{name} must be an integer")


def file_json(stored: StoredFile) -> dict[str, Any]:
    return {
        "file_id": stored.file_id,
        "file_name": stored.file_name,
        "mime_type": stored.mime_type,
        "file_size": len(stored.data),
        "width": stored.width,
        "height": stored.height,
        "url": f"/sandbox/files/{stored.file_id}",
    }


def chat_message_json(message: StoredMessage) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "from": message.sender,
        "text": message.text,
        "entities": message.entities,
        "caption": message.caption,
        "caption_entities": message.caption_entities,
        "reply_markup": message.reply_markup,
        "photo": file_json(message.photo) if message.photo else None,
        "document": file_json(message.document) if message.document else None,
        "edited": message.edit_date is not None,
        "edit_date": message.edit_date,
        "deleted": message.deleted,
        "date": message.date,
    }


def bot_command_entities(text: str) -> list[dict[str, Any]]:
    """Telegram marks a leading /command (with an optional @botname) as a bot_command entity."""
    if not text.startswith("/"):
        return []
    command = text.split(maxsplit=1)[0]
    if len(command) < 2:
        return []
    return [{"type": "bot_command", "offset": 0, "length": len(command.encode("utf-16-le")) // 2}]


class UserSide:
    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/sandbox/bot", self.bot_info)
        router.add_get("/sandbox/users", self.list_users)
        router.add_post("/sandbox/users", self.save_user)
        router.add_post("/sandbox/send", self.send)
        router.add_post("/sandbox/upload", self.upload)
        router.add_post("/sandbox/click", self.click)
        router.add_get("/sandbox/chat/{user_id}", self.chat)
        router.add_get("/sandbox/files/{file_id}", self.download)
        router.add_get("/sandbox/faults", self.list_faults)
        router.add_post("/sandbox/faults", self.add_fault)
        router.add_delete("/sandbox/faults", self.clear_faults)
        router.add_get("/sandbox/requests", self.list_requests)
        router.add_post("/sandbox/reset", self.reset)
        router.add_post("/sandbox/redeliver", self.redeliver)

    def _bot(self, request: web.Request, body: dict[str, Any] | None = None) -> BotAccount:
        choice = {**request.query, **(body or {})}
        if choice.get("bot_id") not in (None, ""):
            return self.state.bot(integer(choice["bot_id"], "bot_id"))
        try:
            return self.state.bot_for_token(str(choice.get("token") or self.state.default_token))
        except ApiError:
            fail(401, "token is not a bot token")

    def _user(self, user_id: Any) -> User:
        user = self.state.users.get(integer(user_id, "user_id"))
        if user is None:
            fail(404, f"user {user_id} does not exist; create it with POST /sandbox/users")
        return user

    def _conversation_for_user_action(self, bot: BotAccount, user: User) -> Conversation:
        # Writing to a bot you blocked means pressing "Restart" first, which unblocks it. (The
        # state file learns of both with the message or callback the user action adds.)
        bot.blocked_by.discard(user.id)
        conversation = self.state.conversation(bot, user)
        conversation.started = True
        return conversation

    async def bot_info(self, request: web.Request) -> web.Response:
        bot = self._bot(request)
        return web.json_response(bot.to_api())

    async def list_users(self, request: web.Request) -> web.Response:
        bot = self._bot(request)
        users = [
            {**user.to_api(), "blocked": user.id in bot.blocked_by}
            for user in self.state.users.values()
        ]
        return web.json_response({"users": users})

    async def save_user(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        bot = self._bot(request, body)
        user_id = integer(body.get("id"), "id")
        user = self.state.users.get(user_id)
        first_name = str(body.get("first_name") or (user.first_name if user else "")).strip()
        if not first_name:
            fail(400, "first_name is required")
        if user is None:
            user = self.state.users[user_id] = User(user_id, first_name)
        user.first_name = first_name
        for name in ("username", "language_code"):
            if name in body:
                setattr(user, name, body[name] or None)
        if "blocked" in body:
            blocked = body["blocked"] in (True, "true", "1", 1)
            (bot.blocked_by.add if blocked else bot.blocked_by.discard)(user_id)
        self.state.remember()
        return web.json_response({**user.to_api(), "blocked": user_id in bot.blocked_by})

    async def send(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        bot = self._bot(request, body)
        user = self._user(body.get("user_id"))
        text = str(body.get("text", ""))
        if not text.strip():
            fail(400, "text is empty")
        conversation = self._conversation_for_user_action(bot, user)
        message = conversation.add_message("user", text=text, entities=bot_command_entities(text))
        update_id = bot.enqueue("message", conversation.message_to_api(message))
        return web.json_response({"update_id": update_id, "message_id": message.message_id})

    async def upload(self, request: web.Request) -> web.Response:
        if request.content_type != "multipart/form-data":
            fail(400, "send multipart/form-data with user_id, file and optionally caption")
        fields: dict[str, str] = {}
        upload: tuple[str, str, bytes] | None = None
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.name == "file" and part.filename is not None:
                declared = part.headers.get("Content-Type")
                data = bytes(await part.read())
                upload = (part.filename, media_type(part.filename, declared), data)
            else:
                fields[part.name] = await part.text()
        bot = self._bot(request, dict(fields))
        user = self._user(fields.get("user_id"))
        if upload is None:
            fail(400, "the request has no file part")
        file_name, mime_type, data = upload
        stored = self.state.store_file(data, file_name, mime_type, "documents", (0, 0))
        conversation = self._conversation_for_user_action(bot, user)
        message = conversation.add_message(
            "user", document=stored, caption=fields.get("caption") or None
        )
        update_id = bot.enqueue("message", conversation.message_to_api(message))
        return web.json_response({"update_id": update_id, "message_id": message.message_id})

    async def click(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        bot = self._bot(request, body)
        user = self._user(body.get("user_id"))
        message_id = integer(body.get("message_id"), "message_id")
        conversation = self.state.conversation(bot, user)
        message = conversation.live_message(message_id)
        if message is None:
            fail(404, f"message {message_id} does not exist in the chat with user {user.id}")
        conversation = self._conversation_for_user_action(bot, user)
        query_id = str(secrets.randbits(63))
        data = str(body.get("data", ""))
        bot.callback_queries[query_id] = PendingCallbackQuery(
            user_id=user.id,
            message_id=message_id,
            data=data,
            asked_at=asyncio.get_running_loop().time(),
        )
        query = {
            "id": query_id,
            "from": user.to_api(),
            "message": conversation.message_to_api(message),
            "chat_instance": str(bot.id * 1_000_003 + user.id),
            "data": data,
        }
        update_id = bot.enqueue("callback_query", query)
        return web.json_response({"update_id": update_id, "callback_query_id": query_id})

    async def chat(self, request: web.Request) -> web.Response:
        bot = self._bot(request)
        user = self._user(request.match_info["user_id"])
        conversation = self.state.conversation(bot, user)
        if "since" in request.query:
            anchor = integer(request.query["since"], "since")
        else:
            after = integer(request.query.get("after", 0), "after")
            anchor = self._anchor_after(conversation, after)
        timeout = min(float(request.query.get("timeout", 0)), MAX_CHAT_WAIT)
        await self._wait_for_bot(conversation, anchor, timeout)
        messages = sorted(
            (m for m in conversation.messages.values() if m.changed_seq > anchor),
            key=lambda message: message.message_id,
        )
        answers = [answer for answer in conversation.callback_answers if answer.seq > anchor]
        return web.json_response(
            {
                "messages": [chat_message_json(message) for message in messages],
                "callback_answers": [answer.to_json() for answer in answers],
                "cursor": conversation.event_seq,
            }
        )

    @staticmethod
    def _anchor_after(conversation: Conversation, message_id: int) -> int:
        """The event number at which message `message_id` was created."""
        messages = conversation.messages.values()
        return max((m.created_seq for m in messages if m.message_id <= message_id), default=0)

    @staticmethod
    async def _wait_for_bot(conversation: Conversation, anchor: int, at_most: float) -> None:
        """Until the bot said something after `anchor` and then stayed quiet, or the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + at_most
        while True:
            now = loop.time()
            bot_spoke = any(
                message.sender == "bot" and message.changed_seq > anchor
                for message in conversation.messages.values()
            ) or any(answer.seq > anchor for answer in conversation.callback_answers)
            if now >= deadline:
                return
            if not bot_spoke:
                await conversation.changed.wait(deadline - now)
                continue
            quiet_for = now - conversation.last_bot_activity
            if quiet_for >= QUIET_PERIOD:
                return
            await asyncio.sleep(min(QUIET_PERIOD - quiet_for, deadline - now))

    async def download(self, request: web.Request) -> web.Response:
        stored = self.state.files.get(request.match_info["file_id"])
        if stored is None:
            fail(404, "no such file")
        disposition = "inline" if stored.mime_type.startswith("image/") else "attachment"
        return web.Response(
            body=stored.data,
            content_type=stored.mime_type,
            headers={"Content-Disposition": f'{disposition}; filename="{stored.file_name}"'},
        )

    async def list_faults(self, request: web.Request) -> web.Response:
        faults = [
            fault.to_json(method, bot_id)
            for (bot_id, method), pending in self.state.faults.items()
            for fault in pending
        ]
        return web.json_response({"faults": faults})

    async def add_fault(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        bot = self._bot(request, body)
        method = find_method(str(body.get("method", "")))
        if method is None:
            fail(400, f"unknown Bot API method {body.get('method')!r}")
        drop = body.get("error_code") in ("drop", 0, "0")
        error_code = 0 if drop else integer(body.get("error_code"), "error_code")
        if not drop and not 400 <= error_code <= 599:
            fail(400, 'error_code must be an HTTP error status, or 0 / "drop"')
        retry_after = body.get("retry_after")
        if error_code == 429 and retry_after is None:
            retry_after = 1
        retry_after = None if retry_after is None else integer(retry_after, "retry_after")
        description = body.get("description") or _default_description(error_code, retry_after)
        count = integer(body.get("count", 1), "count")
        fault = Fault(error_code, str(description), retry_after, count)
        self.state.faults.setdefault((bot.id, method.name), []).append(fault)
        return web.json_response(fault.to_json(method.name, bot.id))

    async def redeliver(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        bot = self._bot(request, body)
        update_id = integer(body.get("update_id"), "update_id")
        if not bot.redeliver(update_id):
            fail(404, f"update {update_id} is unknown (or too old to deliver again)")
        return web.json_response({"update_id": update_id})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.state.faults.clear()
        return web.json_response({"faults": []})

    async def list_requests(self, request: web.Request) -> web.Response:
        method = request.query.get("method", "").lower()
        bot_id = self._bot(request).id if {"token", "bot_id"} & request.query.keys() else None
        entries = [
            entry
            for entry in self.state.requests
            if (not method or entry["method"].lower() == method)
            and (bot_id is None or entry["bot_id"] == bot_id)
        ]
        return web.json_response({"requests": entries})

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.json_response({"ok": True})


def _default_description(error_code: int, retry_after: int | None) -> str:
    if error_code == 0:
        return "connection dropped"
    if error_code == 429:
        return f"Too Many Requests: retry after {retry_after}"
    if error_code == 403:
        return "Forbidden: bot was blocked by the user"
    try:
        return http.HTTPStatus(error_code).phrase
    except ValueError:
        return "Error"
