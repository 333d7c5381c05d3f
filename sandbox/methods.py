"""The Bot API methods the emulator implements, declared field by field.

Field names, types (spelled as in the Bot API documentation), requiredness and the length limits
stated in the documentation live here and nowhere else: request validation is driven by this table,
and tests/sandbox/test_api_conformance.py compares it with the published api.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Limit:
    """A length range; Telegram counts characters in UTF-16 code units."""

    min: int
    max: int
    unit: Literal["characters", "bytes"]


@dataclass(frozen=True)
class Field:
    name: str
    types: tuple[str, ...]
    required: bool = False
    limit: Limit | None = None


@dataclass(frozen=True)
class Method:
    name: str
    fields: tuple[Field, ...] = ()

    def field(self, name: str) -> Field | None:
        return next((field for field in self.fields if field.name == name), None)

    @property
    def required_fields(self) -> list[str]:
        return [field.name for field in self.fields if field.required]


def required(name: str, *types: str, limit: Limit | None = None) -> Field:
    return Field(name, types, required=True, limit=limit)


def optional(name: str, *types: str, limit: Limit | None = None) -> Field:
    return Field(name, types, required=False, limit=limit)


TEXT_LIMIT = Limit(1, 4096, "characters")
CAPTION_LIMIT = Limit(0, 1024, "characters")
CALLBACK_DATA_LIMIT = Limit(1, 64, "bytes")
CALLBACK_ANSWER_LIMIT = Limit(0, 200, "characters")
SECRET_TOKEN_LIMIT = Limit(1, 256, "characters")

ANY_KEYBOARD = ("InlineKeyboardMarkup", "ReplyKeyboardMarkup", "ReplyKeyboardRemove", "ForceReply")
CHAT_ID = ("Integer", "String")

# Fields every send* method shares after its content fields.
_SEND_OPTIONS = (
    optional("disable_notification", "Boolean"),
    optional("protect_content", "Boolean"),
    optional("allow_paid_broadcast", "Boolean"),
    optional("message_effect_id", "String"),
    optional("suggested_post_parameters", "SuggestedPostParameters"),
    optional("reply_parameters", "ReplyParameters"),
    optional("reply_markup", *ANY_KEYBOARD),
)
_SEND_TARGET = (
    optional("business_connection_id", "String"),
    required("chat_id", *CHAT_ID),
    optional("message_thread_id", "Integer"),
    optional("direct_messages_topic_id", "Integer"),
)
_EDIT_TARGET = (
    optional("business_connection_id", "String"),
    optional("chat_id", *CHAT_ID),
    optional("message_id", "Integer"),
    optional("inline_message_id", "String"),
)
_COMMAND_SCOPE = (
    optional("scope", "BotCommandScope"),
    optional("language_code", "String"),
)

_METHODS = (
    Method("getMe"),
    Method("close"),
    Method("logOut"),
    Method(
        "getUpdates",
        (
            optional("offset", "Integer"),
            optional("limit", "Integer"),
            optional("timeout", "Integer"),
            optional("allowed_updates", "Array of String"),
        ),
    ),
    Method(
        "setWebhook",
        (
            required("url", "String"),
            optional("certificate", "InputFile"),
            optional("ip_address", "String"),
            optional("max_connections", "Integer"),
            optional("allowed_updates", "Array of String"),
            optional("drop_pending_updates", "Boolean"),
            optional("secret_token", "String", limit=SECRET_TOKEN_LIMIT),
        ),
    ),
    Method("deleteWebhook", (optional("drop_pending_updates", "Boolean"),)),
    Method("getWebhookInfo"),
    Method(
        "sendMessage",
        (
            *_SEND_TARGET,
            required("text", "String", limit=TEXT_LIMIT),
            optional("parse_mode", "String"),
            optional("entities", "Array of MessageEntity"),
            optional("link_preview_options", "LinkPreviewOptions"),
            *_SEND_OPTIONS,
        ),
    ),
    Method(
        "sendPhoto",
        (
            *_SEND_TARGET,
            required("photo", "InputFile", "String"),
            optional("caption", "String", limit=CAPTION_LIMIT),
            optional("parse_mode", "String"),
            optional("caption_entities", "Array of MessageEntity"),
            optional("show_caption_above_media", "Boolean"),
            optional("has_spoiler", "Boolean"),
            *_SEND_OPTIONS,
        ),
    ),
    Method(
        "sendDocument",
        (
            *_SEND_TARGET,
            required("document", "InputFile", "String"),
            optional("thumbnail", "InputFile", "String"),
            optional("caption", "String", limit=CAPTION_LIMIT),
            optional("parse_mode", "String"),
            optional("caption_entities", "Array of MessageEntity"),
            optional("disable_content_type_detection", "Boolean"),
            *_SEND_OPTIONS,
        ),
    ),
    Method(
        "editMessageText",
        (
            *_EDIT_TARGET,
            # Not required by the documentation only because rich_message may replace it.
            optional("text", "String", limit=TEXT_LIMIT),
            optional("parse_mode", "String"),
            optional("entities", "Array of MessageEntity"),
            optional("link_preview_options", "LinkPreviewOptions"),
            optional("rich_message", "InputRichMessage"),
            optional("reply_markup", "InlineKeyboardMarkup"),
        ),
    ),
    Method(
        "editMessageCaption",
        (
            *_EDIT_TARGET,
            optional("caption", "String", limit=CAPTION_LIMIT),
            optional("parse_mode", "String"),
            optional("caption_entities", "Array of MessageEntity"),
            optional("show_caption_above_media", "Boolean"),
            optional("reply_markup", "InlineKeyboardMarkup"),
        ),
    ),
    Method(
        "editMessageMedia",
        (
            *_EDIT_TARGET,
            required("media", "InputMedia"),
            optional("reply_markup", "InlineKeyboardMarkup"),
        ),
    ),
    Method(
        "editMessageReplyMarkup",
        (*_EDIT_TARGET, optional("reply_markup", "InlineKeyboardMarkup")),
    ),
    Method("deleteMessage", (required("chat_id", *CHAT_ID), required("message_id", "Integer"))),
    Method(
        "answerCallbackQuery",
        (
            required("callback_query_id", "String"),
            optional("text", "String", limit=CALLBACK_ANSWER_LIMIT),
            optional("show_alert", "Boolean"),
            optional("url", "String"),
            optional("cache_time", "Integer"),
        ),
    ),
    Method("getFile", (required("file_id", "String"),)),
    Method(
        "sendChatAction",
        (
            optional("business_connection_id", "String"),
            required("chat_id", *CHAT_ID),
            optional("message_thread_id", "Integer"),
            required("action", "String"),
        ),
    ),
    Method("setMyCommands", (required("commands", "Array of BotCommand"), *_COMMAND_SCOPE)),
    Method("getMyCommands", _COMMAND_SCOPE),
    Method("deleteMyCommands", _COMMAND_SCOPE),
)

METHODS: dict[str, Method] = {method.name: method for method in _METHODS}

# Limits on fields of objects passed inside parameters, keyed by (type, field).
TYPE_LIMITS: dict[tuple[str, str], Limit] = {
    ("InlineKeyboardButton", "callback_data"): CALLBACK_DATA_LIMIT,
    ("BotCommand", "command"): Limit(1, 32, "characters"),
    ("BotCommand", "description"): Limit(1, 256, "characters"),
}


def find_method(name: str) -> Method | None:
    """Telegram matches method names case-insensitively."""
    return _BY_LOWER_NAME.get(name.lower())


_BY_LOWER_NAME = {name.lower(): method for name, method in METHODS.items()}
