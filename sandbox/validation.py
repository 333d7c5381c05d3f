"""Turns raw request parameters into typed values the way Telegram reads them, or refuses them."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.errors import ApiError, bad_request
from sandbox.html_entities import Entity, EntityParseError, parse_html, utf16_length
from sandbox.markdown_entities import parse_markdown, parse_markdown_v2
from sandbox.methods import TYPE_LIMITS, Field, Limit, Method

Params = dict[str, Any]

_BOOLEAN_WORDS = {"true": True, "1": True, "false": False, "0": False}
_INTEGER = re.compile(r"[+-]?\d+")
_COMMAND = re.compile(r"[a-z0-9_]+")
_MISSING_MESSAGES = {
    "text": "message text is empty",
    "photo": "there is no photo in the request",
    "document": "there is no document in the request",
}
_PARSERS = {"html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart request."""

    filename: str
    content_type: str
    data: bytes


def coerce_params(method: Method, raw: Mapping[str, Any], uploads: Mapping[str, Upload]) -> Params:
    """Checks names, presence and types; file parts are found by field name or attach://name.

    Unknown parameters are refused (Telegram ignores them silently), because in a test a
    misspelt parameter is a bug that should surface rather than be ignored.
    """
    params: Params = {}
    for name, value in raw.items():
        field = method.field(name)
        if field is None:
            raise bad_request(f'unknown parameter "{name}" for method {method.name}')
        params[name] = _coerce(field, value, uploads)
    for name, upload in uploads.items():
        field = method.field(name)
        if field is not None and "InputFile" in field.types:
            params[name] = upload
    for field in method.fields:
        if field.required and params.get(field.name) in (None, "", []):
            raise bad_request(_MISSING_MESSAGES.get(field.name, f"{field.name} is empty"))
    return params


def _coerce(field: Field, value: Any, uploads: Mapping[str, Upload]) -> Any:
    types = field.types
    if "InputFile" in types:
        return _file_reference(field, value, uploads)
    if types == ("InputMedia",):
        media = _json_value(field, value)
        if "media" not in media:
            raise bad_request("media is empty")
        # The file itself is a part of the request, named by "attach://<name>".
        return {**media, "media": _file_reference(field, media["media"], uploads)}
    if types == ("Integer", "String"):  # chat_id: a number, or a username as @name
        text = str(value)
        return int(text) if _INTEGER.fullmatch(text) else text
    if types == ("Integer",):
        if isinstance(value, bool) or not _INTEGER.fullmatch(str(value)):
            raise bad_request(f'field "{field.name}" must be of type Integer')
        return int(value)
    if types == ("Boolean",):
        if isinstance(value, bool):
            return value
        word = str(value).lower()
        if word not in _BOOLEAN_WORDS:
            raise bad_request(f'field "{field.name}" must be of type Boolean')
        return _BOOLEAN_WORDS[word]
    if types == ("String",):
        if isinstance(value, dict | list):
            raise bad_request(f'field "{field.name}" must be of type String')
        return str(value)
    return _json_value(field, value)


def _json_value(field: Field, value: Any) -> Any:
    """Objects and arrays arrive as JSON strings in query strings, forms and multipart."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {field.name} JSON object") from None
    expected: type = list if field.types[0].startswith("Array of") else dict
    if not isinstance(value, expected):
        raise bad_request(f"can't parse {field.name} JSON object")
    return value


def _file_reference(field: Field, value: Any, uploads: Mapping[str, Upload]) -> Upload | str:
    if isinstance(value, Upload):
        return value
    reference = str(value)
    if reference.startswith("attach://"):
        name = reference.removeprefix("attach://")
        if name not in uploads:
            raise bad_request(f"{field.name} file attach://{name} not found in the request")
        return uploads[name]
    return reference


def check_length(limit: Limit | None, value: str, too_short: str, too_long: str) -> None:
    if limit is None:
        return
    size = len(value.encode("utf-8")) if limit.unit == "bytes" else utf16_length(value)
    if size < limit.min:
        raise bad_request(too_short)
    if size > limit.max:
        raise bad_request(too_long)


def formatted_text(
    method: Method, params: Params, field_name: str, entities_field: str
) -> tuple[str, list[Entity]]:
    """Applies parse_mode (or explicit entities) and the field's length limit to visible text."""
    markup = params.get(field_name, "")
    parse_mode = str(params.get("parse_mode", "")).lower()
    if parse_mode:
        parser = _PARSERS.get(parse_mode)
        if parser is None:
            raise bad_request(f"unsupported parse_mode {params['parse_mode']!r}")
        try:
            text, entities = parser(markup)
        except EntityParseError as error:
            raise bad_request(f"can't parse entities: {error}") from None
    else:
        text, entities = markup, _checked_entities(params.get(entities_field, []))
    field = method.field(field_name)
    if field_name == "text":
        if not text.strip():
            raise bad_request("message text is empty")
        check_length(
            field.limit if field else None, text, "message text is empty", "message is too long"
        )
    else:
        check_length(field.limit if field else None, text, "", "message caption is too long")
    return text, entities


def _checked_entities(entities: list[Any]) -> list[Entity]:
    for entity in entities:
        if not (
            isinstance(entity, dict)
            and isinstance(entity.get("type"), str)
            and isinstance(entity.get("offset"), int)
            and isinstance(entity.get("length"), int)
        ):
            raise bad_request("can't parse entities JSON object")
    return sorted(entities, key=lambda entity: (entity["offset"], -entity["length"]))


_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)


def checked_reply_markup(markup: Any, *, inline_only: bool) -> dict[str, Any] | None:
    if markup is None:
        return None
    if "inline_keyboard" in markup:
        _check_inline_keyboard(markup["inline_keyboard"])
        return dict(markup)
    if inline_only:
        raise bad_request("can't parse inline keyboard markup JSON object")
    if isinstance(markup.get("keyboard"), list) or markup.get("remove_keyboard") is True:
        return dict(markup)
    if markup.get("force_reply") is True:
        return dict(markup)
    raise bad_request("can't parse reply keyboard markup JSON object")


def _check_inline_keyboard(rows: Any) -> None:
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request("can't parse inline keyboard markup JSON object")
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise bad_request("can't parse inline keyboard button: Text must be non-empty")
            if not button["text"]:
                raise bad_request("can't parse inline keyboard button: Text must be non-empty")
            actions = [action for action in _BUTTON_ACTIONS if action in button]
            if len(actions) != 1:
                raise bad_request(
                    "can't parse inline keyboard button: Text buttons are unallowed in the "
                    "inline keyboard"
                )
            if "callback_data" in button:
                check_length(
                    TYPE_LIMITS[("InlineKeyboardButton", "callback_data")],
                    str(button["callback_data"]),
                    "BUTTON_DATA_INVALID",
                    "BUTTON_DATA_INVALID",
                )


def checked_commands(commands: list[Any]) -> list[dict[str, str]]:
    if len(commands) > 100:
        raise bad_request("too many commands")
    checked = []
    for command in commands:
        if not isinstance(command, dict):
            raise bad_request("can't parse BotCommand JSON object")
        name = str(command.get("command", ""))
        description = str(command.get("description", ""))
        check_length(
            TYPE_LIMITS[("BotCommand", "command")],
            name,
            "BOT_COMMAND_INVALID",
            "BOT_COMMAND_INVALID",
        )
        if not _COMMAND.fullmatch(name):
            raise bad_request("BOT_COMMAND_INVALID")
        check_length(
            TYPE_LIMITS[("BotCommand", "description")],
            description,
            "command description is empty",
            "BOT_COMMAND_DESCRIPTION_INVALID",
        )
        checked.append({"command": name, "description": description})
    return checked


def chat_id_of(params: Params) -> int:
    """Only private chats exist here, so a chat id must be a user's numeric id."""
    chat_id = params.get("chat_id")
    if not isinstance(chat_id, int):
        raise bad_request("chat not found")
    return chat_id


def require_int(params: Params, name: str, missing: str) -> int:
    value = params.get(name)
    if not isinstance(value, int):
        raise bad_request(missing)
    return value


__all__ = ["ApiError", "Params", "Upload"]
