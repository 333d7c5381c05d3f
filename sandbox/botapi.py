"""The Bot API routes: /bot<token>/<method> and /file/bot<token>/<file_path>."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import BodyPartReader, web

from sandbox.errors import (
    CHAT_NOT_FOUND,
    MESSAGE_NOT_MODIFIED,
    QUERY_TOO_OLD,
    ApiError,
    bad_request,
    forbidden,
)
from sandbox.files import image_size, media_type
from sandbox.methods import METHODS, Method, find_method
from sandbox.state import (
    BotAccount,
    CallbackAnswer,
    Conversation,
    SandboxState,
    StoredFile,
    StoredMessage,
    Webhook,
)
from sandbox.validation import (
    Params,
    Upload,
    chat_id_of,
    check_length,
    checked_commands,
    checked_reply_markup,
    coerce_params,
    formatted_text,
    require_int,
)
from sandbox.webhook import deliver_updates

Handler = Callable[[BotAccount, Params], Awaitable[Any]]

CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
LONG_POLL_CAP = 50  # seconds; Telegram does not hold a getUpdates call longer


class DroppedConnection(Exception):
    """An injected fault: the client gets no response at all."""


async def read_request(request: web.Request) -> tuple[dict[str, Any], dict[str, Upload]]:
    """Parameters from the query string and a JSON, form-encoded or multipart body."""
    raw: dict[str, Any] = dict(request.query)
    uploads: dict[str, Upload] = {}
    if not request.body_exists:
        return raw, uploads
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise bad_request("can't parse JSON request body") from None
        if not isinstance(body, dict):
            raise bad_request("JSON request body must be an object")
        raw.update(body)
    elif request.content_type == "multipart/form-data":
        # Read part by part: the app's client_max_size must not cap uploaded files.
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.filename is None:
                raw[part.name] = await part.text()
            else:
                data = bytes(await part.read())
                declared = part.headers.get(aiohttp.hdrs.CONTENT_TYPE)
                uploads[part.name] = Upload(
                    part.filename, media_type(part.filename, declared), data
                )
    else:
        raw.update(await request.post())
    return raw, uploads


def loggable(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as JSON can show them: uploads (also inside an InputMedia) by name and
    size."""
    return {
        name: {"file_name": value.filename, "size": len(value.data)}
        if isinstance(value, Upload)
        else loggable(value)
        if isinstance(value, dict)
        else value
        for name, value in params.items()
    }


class BotApi:
    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._http: aiohttp.ClientSession | None = None
        self._handlers: dict[str, Handler] = {
            "getMe": self.get_me,
            "close": self.harmless,
            "logOut": self.harmless,
            "getUpdates": self.get_updates,
            "setWebhook": self.set_webhook,
            "deleteWebhook": self.delete_webhook,
            "getWebhookInfo": self.get_webhook_info,
            "sendMessage": self.send_message,
            "sendPhoto": self.send_photo,
            "sendDocument": self.send_document,
            "editMessageText": self.edit_message_text,
            "editMessageCaption": self.edit_message_caption,
            "editMessageMedia": self.edit_message_media,
            "editMessageReplyMarkup": self.edit_message_reply_markup,
            "deleteMessage": self.delete_message,
            "answerCallbackQuery": self.answer_callback_query,
            "getFile": self.get_file,
            "sendChatAction": self.send_chat_action,
            "setMyCommands": self.set_my_commands,
            "getMyCommands": self.get_my_commands,
            "deleteMyCommands": self.delete_my_commands,
        }
        assert self._handlers.keys() == METHODS.keys(), "every declared method needs a handler"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self.handle_call)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self.download)
        app.on_cleanup.append(self._close)

    async def _close(self, _app: web.Application) -> None:
        for bot in self.state.bots.values():
            bot.stop_webhook_delivery()
        if self._http is not None:
            await self._http.close()

    async def handle_call(self, request: web.Request) -> web.StreamResponse:
        try:
            bot = self.state.bot_for_token(request.match_info["token"])
            method = find_method(request.match_info["method"])
            if method is None:
                raise ApiError(404, "Not Found: method not found")
            raw, uploads = await read_request(request)
            entry: dict[str, Any] = {
                "method": method.name,
                "bot_id": bot.id,
                "params": loggable({**raw, **uploads}),
                "time": time.time(),
            }
            self.state.requests.append(entry)
            result = await self._call(bot, method, raw, uploads, entry)
        except ApiError as error:
            return web.json_response(error.to_json(), status=error.error_code)
        except DroppedConnection:
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError from None
        return web.json_response({"ok": True, "result": result})

    async def _call(
        self,
        bot: BotAccount,
        method: Method,
        raw: dict[str, Any],
        uploads: dict[str, Upload],
        entry: dict[str, Any],
    ) -> Any:
        fault = self.state.take_fault(bot.id, method.name)
        if fault is not None:
            entry["fault"] = fault.error_code
            if fault.error_code == 0:
                raise DroppedConnection
            raise ApiError(fault.error_code, fault.description, fault.retry_after)
        try:
            params = coerce_params(method, raw, uploads)
            entry["params"] = loggable(params)
            result = await self._handlers[method.name](bot, params)
        except ApiError as error:
            entry["error_code"] = error.error_code
            entry["description"] = error.description
            raise
        entry["result"] = result
        return result

    async def download(self, request: web.Request) -> web.StreamResponse:
        try:
            self.state.bot_for_token(request.match_info["token"])
        except ApiError as error:
            return web.json_response(error.to_json(), status=error.error_code)
        stored = self.state.file_by_path(request.match_info["file_path"])
        if stored is None:
            not_found = ApiError(404, "Not Found: file not found")
            return web.json_response(not_found.to_json(), status=404)
        return web.Response(body=stored.data, content_type=stored.mime_type)

    # Updates

    async def get_me(self, bot: BotAccount, params: Params) -> Any:
        return {
            **bot.to_api(),
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def harmless(self, bot: BotAccount, params: Params) -> Any:
        return True

    async def get_updates(self, bot: BotAccount, params: Params) -> Any:
        if bot.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        bot.poll_generation += 1
        generation = bot.poll_generation
        bot.updates_changed.fire()  # an older long poll learns it has been superseded
        if "allowed_updates" in params:
            bot.allowed_updates = list(params["allowed_updates"])
        offset = params.get("offset")
        if isinstance(offset, int) and offset > 0:
            bot.updates = [update for update in bot.updates if update["update_id"] >= offset]
        elif isinstance(offset, int) and offset < 0:
            bot.updates = bot.updates[offset:]
        limit = min(max(params.get("limit", 100), 1), 100)
        timeout = min(max(params.get("timeout", 0), 0), LONG_POLL_CAP)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not bot.updates and loop.time() < deadline:
            await bot.updates_changed.wait(deadline - loop.time())
            if bot.poll_generation != generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only "
                    "one bot instance is running",
                )
        return bot.updates[:limit]

    async def set_webhook(self, bot: BotAccount, params: Params) -> Any:
        url = params["url"]
        if not url:
            return await self.delete_webhook(bot, params)
        if not url.startswith(("http://", "https://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None:
            field = METHODS["setWebhook"].field("secret_token")
            check_length(
                field.limit if field else None,
                secret,
                "bad webhook: secret token is empty",
                "bad webhook: secret token is too long",
            )
            if not all(char.isascii() and (char.isalnum() or char in "_-") for char in secret):
                raise bad_request("bad webhook: secret token contains unallowed characters")
        webhook = Webhook(
            url=url,
            secret_token=secret,
            # Telegram's range is 1-100 (40 when not given); outside it, the nearest end.
            max_connections=min(max(params.get("max_connections", 40), 1), 100),
            allowed_updates=params.get("allowed_updates"),
        )
        drop = bool(params.get("drop_pending_updates"))
        current = bot.webhook if bot.webhook_task is not None else None
        if not drop and current is not None and _same_webhook(current, webhook):
            # Telegram answers "Webhook is already set" and goes on delivering: every worker
            # of a bot sets it on start, and an update in flight must not go out twice.
            return True
        bot.stop_webhook_delivery()
        if drop:
            bot.updates.clear()
        bot.webhook = webhook
        if self._http is None:
            self._http = aiohttp.ClientSession()
        bot.webhook_task = asyncio.create_task(
            deliver_updates(
                bot,
                bot.webhook,
                self._http,
                self.state.webhook_retry_delay,
                self.state.webhook_max_retry_delay,
            )
        )
        return True

    async def delete_webhook(self, bot: BotAccount, params: Params) -> Any:
        bot.stop_webhook_delivery()
        bot.webhook = None
        if params.get("drop_pending_updates"):
            bot.updates.clear()
        return True

    async def get_webhook_info(self, bot: BotAccount, params: Params) -> Any:
        webhook = bot.webhook
        info: dict[str, Any] = {
            "url": webhook.url if webhook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.updates),
        }
        if webhook is not None:
            info["max_connections"] = webhook.max_connections
            if webhook.allowed_updates is not None:
                info["allowed_updates"] = webhook.allowed_updates
            if webhook.last_error_date is not None:
                info["last_error_date"] = webhook.last_error_date
                info["last_error_message"] = webhook.last_error_message
        return info

    # Messages

    def _conversation(self, bot: BotAccount, params: Params) -> Conversation:
        chat_id = chat_id_of(params)
        user = self.state.users.get(chat_id)
        if user is None:
            raise bad_request(CHAT_NOT_FOUND)
        if chat_id in bot.blocked_by:
            raise forbidden("bot was blocked by the user")
        conversation = self.state.conversation(bot, user)
        if not conversation.started:
            raise forbidden("bot can't initiate conversation with a user")
        return conversation

    def _message_to_edit(
        self, bot: BotAccount, params: Params
    ) -> tuple[Conversation, StoredMessage]:
        if "inline_message_id" in params:
            raise bad_request("MESSAGE_ID_INVALID")  # inline mode is not emulated
        if "chat_id" not in params:
            raise bad_request("chat_id is empty")
        conversation = self._conversation(bot, params)
        message_id = require_int(params, "message_id", "message identifier is not specified")
        message = conversation.live_message(message_id)
        if message is None:
            raise bad_request("message to edit not found")
        if message.sender != "bot":
            raise bad_request("message can't be edited")
        return conversation, message

    def _stored_file(self, value: Upload | str, as_photo: bool) -> StoredFile:
        if isinstance(value, str):
            if value in self.state.files:
                return self.state.files[value]
            if value.startswith(("http://", "https://")):
                raise bad_request("failed to get HTTP URL content")  # no internet here
            raise bad_request("wrong file identifier/HTTP URL specified")
        size = (0, 0)
        if as_photo:
            measured = image_size(value.data)
            if measured is None:
                raise bad_request("IMAGE_PROCESS_FAILED")
            size = measured
        folder = "photos" if as_photo else "documents"
        return self.state.store_file(value.data, value.filename, value.content_type, folder, size)

    def _send(self, conversation: Conversation, params: Params, **content: Any) -> Any:
        markup = checked_reply_markup(params.get("reply_markup"), inline_only=False)
        message = conversation.add_message("bot", reply_markup=markup, **content)
        return conversation.message_to_api(message)

    async def send_message(self, bot: BotAccount, params: Params) -> Any:
        conversation = self._conversation(bot, params)
        text, entities = formatted_text(METHODS["sendMessage"], params, "text", "entities")
        return self._send(conversation, params, text=text, entities=entities)

    async def send_photo(self, bot: BotAccount, params: Params) -> Any:
        conversation = self._conversation(bot, params)
        caption, entities = formatted_text(
            METHODS["sendPhoto"], params, "caption", "caption_entities"
        )
        photo = self._stored_file(params["photo"], as_photo=True)
        return self._send(
            conversation, params, photo=photo, caption=caption, caption_entities=entities
        )

    async def send_document(self, bot: BotAccount, params: Params) -> Any:
        conversation = self._conversation(bot, params)
        caption, entities = formatted_text(
            METHODS["sendDocument"], params, "caption", "caption_entities"
        )
        document = self._stored_file(params["document"], as_photo=False)
        return self._send(
            conversation, params, document=document, caption=caption, caption_entities=entities
        )

    def _apply_edit(
        self, conversation: Conversation, message: StoredMessage, **changes: Any
    ) -> Any:
        if all(getattr(message, name) == value for name, value in changes.items()):
            raise bad_request(MESSAGE_NOT_MODIFIED)
        for name, value in changes.items():
            setattr(message, name, value)
        message.edit_date = int(time.time())
        message.changed_seq = conversation.next_event(by_bot=True)
        return conversation.message_to_api(message)

    async def edit_message_text(self, bot: BotAccount, params: Params) -> Any:
        conversation, message = self._message_to_edit(bot, params)
        if message.text is None:
            raise bad_request("there is no text in the message to edit")
        text, entities = formatted_text(METHODS["editMessageText"], params, "text", "entities")
        # Like Telegram, an edit without reply_markup removes the inline keyboard.
        markup = checked_reply_markup(params.get("reply_markup"), inline_only=True)
        return self._apply_edit(
            conversation, message, text=text, entities=entities, reply_markup=markup
        )

    async def edit_message_caption(self, bot: BotAccount, params: Params) -> Any:
        conversation, message = self._message_to_edit(bot, params)
        if message.text is not None:
            raise bad_request("there is no caption in the message to edit")
        caption, entities = formatted_text(
            METHODS["editMessageCaption"], params, "caption", "caption_entities"
        )
        markup = checked_reply_markup(params.get("reply_markup"), inline_only=True)
        return self._apply_edit(
            conversation, message, caption=caption, caption_entities=entities, reply_markup=markup
        )

    async def edit_message_media(self, bot: BotAccount, params: Params) -> Any:
        """Replaces a message's photo or document (and caption and keyboard), or
        turns a text message into one (Bot API 10.1 allows it). Only photos and documents are
        emulated."""
        conversation, message = self._message_to_edit(bot, params)
        media = params["media"]
        kind = media.get("type")
        if kind not in ("photo", "document"):
            raise bad_request(f"the sandbox emulates photo and document media, not {kind!r}")
        caption, entities = formatted_text(
            METHODS["sendPhoto"], media, "caption", "caption_entities"
        )
        stored = self._stored_file(media["media"], as_photo=kind == "photo")
        markup = checked_reply_markup(params.get("reply_markup"), inline_only=True)
        return self._apply_edit(
            conversation,
            message,
            text=None,
            entities=[],
            photo=stored if kind == "photo" else None,
            document=stored if kind == "document" else None,
            caption=caption,
            caption_entities=entities,
            reply_markup=markup,
        )

    async def edit_message_reply_markup(self, bot: BotAccount, params: Params) -> Any:
        conversation, message = self._message_to_edit(bot, params)
        markup = checked_reply_markup(params.get("reply_markup"), inline_only=True)
        return self._apply_edit(conversation, message, reply_markup=markup)

    async def delete_message(self, bot: BotAccount, params: Params) -> Any:
        conversation = self._conversation(bot, params)
        message = conversation.live_message(params["message_id"])
        if message is None:
            raise bad_request("message to delete not found")
        message.deleted = True
        message.changed_seq = conversation.next_event(by_bot=True)
        return True

    async def answer_callback_query(self, bot: BotAccount, params: Params) -> Any:
        query_id = params["callback_query_id"]
        field = METHODS["answerCallbackQuery"].field("text")
        text = params.get("text")
        if text is not None:
            check_length(field.limit if field else None, text, "", "MESSAGE_TOO_LONG")
        query = bot.callback_queries.pop(query_id, None)
        age = asyncio.get_running_loop().time() - query.asked_at if query else 0.0
        if query is None or age > self.state.callback_answer_timeout:
            raise bad_request(QUERY_TOO_OLD)
        user = self.state.users[query.user_id]
        conversation = self.state.conversation(bot, user)
        conversation.callback_answers.append(
            CallbackAnswer(
                seq=conversation.next_event(by_bot=True),
                callback_query_id=query_id,
                message_id=query.message_id,
                data=query.data,
                text=text,
                show_alert=bool(params.get("show_alert", False)),
                url=params.get("url"),
            )
        )
        return True

    async def get_file(self, bot: BotAccount, params: Params) -> Any:
        stored = self.state.files.get(params["file_id"])
        if stored is None:
            raise bad_request("invalid file_id")
        return stored.as_file()

    async def send_chat_action(self, bot: BotAccount, params: Params) -> Any:
        self._conversation(bot, params)
        if params["action"] not in CHAT_ACTIONS:
            raise bad_request("wrong parameter action in request")
        return True

    # Commands

    @staticmethod
    def _commands_key(params: Params) -> str:
        scope = params.get("scope") or {"type": "default"}
        language = str(params.get("language_code", ""))
        return json.dumps(scope, sort_keys=True) + "|" + language

    async def set_my_commands(self, bot: BotAccount, params: Params) -> Any:
        bot.commands[self._commands_key(params)] = checked_commands(params["commands"])
        return True

    async def get_my_commands(self, bot: BotAccount, params: Params) -> Any:
        return bot.commands.get(self._commands_key(params), [])

    async def delete_my_commands(self, bot: BotAccount, params: Params) -> Any:
        bot.commands.pop(self._commands_key(params), None)
        return True


def _same_webhook(old: Webhook, new: Webhook) -> bool:
    return (old.url, old.secret_token, old.max_connections, old.allowed_updates) == (
        new.url,
        new.secret_token,
        new.max_connections,
        new.allowed_updates,
    )
