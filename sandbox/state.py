"""Everything the emulated Telegram remembers: bots, users, their private chats, files, faults.

With a state file, what Telegram itself would still know after a restart survives one: the users,
each bot's next update id, who blocked it, and which chats were started and how far their
message ids and event numbers went. (Messages, files and pending updates do not.)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from sandbox.errors import ApiError
from sandbox.html_entities import Entity

TOKEN_PATTERN = re.compile(r"(\d+):[A-Za-z0-9_-]+")
DEFAULT_TOKEN = "1000000001:sandbox-token"
UNAUTHORIZED = ApiError(401, "Unauthorized")


class Signal:
    """Wakes every coroutine waiting for "something changed"."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, at_most: float | None) -> None:
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), at_most)


@dataclass
class User:
    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = None

    def to_api(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def private_chat(self) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.username:
            chat["username"] = self.username
        return chat


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    file_name: str
    mime_type: str
    width: int = 0
    height: int = 0

    def as_document(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_name": self.file_name,
            "mime_type": self.mime_type,
            "file_size": len(self.data),
        }

    def as_photo(self) -> list[dict[str, Any]]:
        return [
            {
                "file_id": self.file_id,
                "file_unique_id": self.file_unique_id,
                "width": self.width,
                "height": self.height,
                "file_size": len(self.data),
            }
        ]

    def as_file(self) -> dict[str, Any]:
        return {
            "file_id": self.file_id,
            "file_unique_id": self.file_unique_id,
            "file_size": len(self.data),
            "file_path": self.file_path,
        }


@dataclass
class StoredMessage:
    message_id: int
    sender: Literal["bot", "user"]
    date: int
    created_seq: int
    changed_seq: int  # chat event number of the creation, last edit or deletion
    text: str | None = None
    entities: list[Entity] = field(default_factory=list)
    caption: str | None = None
    caption_entities: list[Entity] = field(default_factory=list)
    photo: StoredFile | None = None
    document: StoredFile | None = None
    reply_markup: dict[str, Any] | None = None
    edit_date: int | None = None
    deleted: bool = False


@dataclass
class CallbackAnswer:
    seq: int
    callback_query_id: str
    message_id: int
    data: str
    text: str | None
    show_alert: bool
    url: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "callback_query_id": self.callback_query_id,
            "message_id": self.message_id,
            "data": self.data,
            "text": self.text,
            "show_alert": self.show_alert,
            "url": self.url,
        }


@dataclass
class PendingCallbackQuery:
    user_id: int
    message_id: int
    data: str
    asked_at: float  # event loop time


class Conversation:
    """The private chat between one bot and one user.

    Every creation, edit or deletion of a message and every callback answer takes the next number
    of the chat's event sequence; the user-side chat view reports what changed after a point of
    that sequence.
    """

    def __init__(self, bot: BotAccount, user: User) -> None:
        self.bot = bot
        self.user = user
        self.messages: dict[int, StoredMessage] = {}
        self.callback_answers: list[CallbackAnswer] = []
        self.started = False  # a bot cannot write first to a user who never wrote to it
        self.event_seq = 0  # goes on after a restart, so a chat view's cursor stays valid
        self.last_bot_activity = 0.0  # event loop time
        self.changed = Signal()
        self.last_message_id = 0  # message ids go on after a restart, as Telegram's do

    def next_event(self, by_bot: bool) -> int:
        self.event_seq += 1
        if by_bot:
            self.last_bot_activity = asyncio.get_running_loop().time()
        self.changed.fire()
        self.bot.on_change()
        return self.event_seq

    def add_message(self, sender: Literal["bot", "user"], **content: Any) -> StoredMessage:
        self.last_message_id += 1
        seq = self.next_event(by_bot=sender == "bot")
        message = StoredMessage(
            message_id=self.last_message_id,
            sender=sender,
            date=int(time.time()),
            created_seq=seq,
            changed_seq=seq,
            **content,
        )
        self.messages[message.message_id] = message
        return message

    def live_message(self, message_id: int) -> StoredMessage | None:
        message = self.messages.get(message_id)
        return None if message is None or message.deleted else message

    def message_to_api(self, message: StoredMessage) -> dict[str, Any]:
        """The Message object, as the Bot API shows it."""
        sender = self.bot.to_api() if message.sender == "bot" else self.user.to_api()
        result: dict[str, Any] = {
            "message_id": message.message_id,
            "from": sender,
            "chat": self.user.private_chat(),
            "date": message.date,
        }
        if message.edit_date is not None:
            result["edit_date"] = message.edit_date
        if message.text is not None:
            result["text"] = message.text
            if message.entities:
                result["entities"] = message.entities
        if message.photo is not None:
            result["photo"] = message.photo.as_photo()
        if message.document is not None:
            result["document"] = message.document.as_document()
        if message.caption:
            result["caption"] = message.caption
            if message.caption_entities:
                result["caption_entities"] = message.caption_entities
        if message.reply_markup is not None and "inline_keyboard" in message.reply_markup:
            result["reply_markup"] = message.reply_markup
        return result


@dataclass
class Webhook:
    url: str
    secret_token: str | None
    max_connections: int
    allowed_updates: list[str] | None
    last_error_date: int | None = None
    last_error_message: str | None = None


RECENT_UPDATES = 1000  # updates kept for redelivery


class BotAccount:
    def __init__(
        self, bot_id: int, next_update_id: int = 1, on_change: Callable[[], None] | None = None
    ) -> None:
        self.id = bot_id
        self.on_change = on_change or (lambda: None)  # something worth keeping changed
        self.username = f"sandbox_{bot_id}_bot"
        self.updates: list[dict[str, Any]] = []
        self.updates_changed = Signal()
        self.allowed_updates: list[str] = []
        self.poll_generation = 0  # a newer getUpdates call ends an older one with 409
        self.webhook: Webhook | None = None
        self.webhook_task: asyncio.Task[None] | None = None
        self.commands: dict[str, list[dict[str, str]]] = {}
        self.conversations: dict[int, Conversation] = {}
        self.blocked_by: set[int] = set()
        self.callback_queries: dict[str, PendingCallbackQuery] = {}
        self.recent_updates: dict[int, dict[str, Any]] = {}
        self.next_update_id = next_update_id

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "is_bot": True,
            "first_name": f"Sandbox bot {self.id}",
            "username": self.username,
        }

    def enqueue(self, kind: str, payload: dict[str, Any]) -> int:
        """Queues an update; like Telegram, skips kinds outside allowed_updates."""
        update_id = self.next_update_id
        self.next_update_id += 1
        self.on_change()
        allowed = self.webhook.allowed_updates if self.webhook else None
        allowed = allowed or self.allowed_updates
        if not allowed or kind in allowed:
            update = {"update_id": update_id, kind: payload}
            self.updates.append(update)
            self.recent_updates[update_id] = update
            if len(self.recent_updates) > RECENT_UPDATES:
                del self.recent_updates[next(iter(self.recent_updates))]
            self.updates_changed.fire()
        return update_id

    def redeliver(self, update_id: int) -> bool:
        """Queue an update again, unchanged, as Telegram does when a webhook answered with an
        error or a bot restarted before confirming it. False if the update is unknown."""
        update = self.recent_updates.get(update_id)
        if update is None:
            return False
        self.updates.append(update)
        self.updates_changed.fire()
        return True

    def stop_webhook_delivery(self) -> None:
        if self.webhook_task is not None:
            self.webhook_task.cancel()
            self.webhook_task = None


@dataclass
class Fault:
    """An injected failure: error_code 0 drops the connection without any response."""

    error_code: int
    description: str
    retry_after: int | None
    remaining: int

    def to_json(self, method: str, bot_id: int) -> dict[str, Any]:
        return {
            "method": method,
            "bot_id": bot_id,
            "error_code": self.error_code,
            "description": self.description,
            "retry_after": self.retry_after,
            "count": self.remaining,
        }


class SandboxState:
    def __init__(
        self,
        default_token: str = DEFAULT_TOKEN,
        *,
        callback_answer_timeout: float = 15.0,
        webhook_retry_delay: float = 0.1,
        webhook_max_retry_delay: float = 5.0,
        state_file: Path | None = None,
    ) -> None:
        """`state_file`: where to keep what survives a restart (read now if it exists, written
        on every change); None keeps everything in memory only."""
        if not TOKEN_PATTERN.fullmatch(default_token):
            raise ValueError(f"not a bot token: {default_token!r}")
        self.default_token = default_token
        self.callback_answer_timeout = callback_answer_timeout
        self.webhook_retry_delay = webhook_retry_delay
        self.webhook_max_retry_delay = webhook_max_retry_delay
        self.state_file = None  # nothing to write while reading it
        self._next_update_ids: dict[int, int] = {}
        self.reset()
        if state_file is not None and state_file.exists():
            self._restore(state_file)
        self.state_file = state_file

    def reset(self) -> None:
        """Forgets everything but each bot's next update id: like Telegram, the emulator never
        issues an update id twice, which a bot's ledger of handled updates would ignore."""
        for bot in getattr(self, "bots", {}).values():
            bot.stop_webhook_delivery()
            self._next_update_ids[bot.id] = bot.next_update_id
        self.bots: dict[int, BotAccount] = {}
        self.users: dict[int, User] = {}
        self.files: dict[str, StoredFile] = {}
        self.faults: dict[tuple[int, str], list[Fault]] = {}
        self.requests: list[dict[str, Any]] = []
        self._file_numbers = itertools.count(1)
        self.remember()

    def add_user(self, user: User) -> None:
        self.users[user.id] = user
        self.remember()

    def remember(self) -> None:
        """Writes the state file after a change worth keeping (a small file: at once, whole,
        and replaced atomically, so a crash leaves the old state or the new one)."""
        if self.state_file is None:
            return
        bots: dict[str, Any] = {
            str(bot_id): {"next_update_id": next_id}
            for bot_id, next_id in self._next_update_ids.items()
        }
        for bot in self.bots.values():
            bots[str(bot.id)] = {
                "next_update_id": bot.next_update_id,
                "blocked_by": sorted(bot.blocked_by),
                "chats": {  # the started ones
                    str(user_id): {
                        "last_message_id": conversation.last_message_id,
                        "event_seq": conversation.event_seq,
                    }
                    for user_id, conversation in bot.conversations.items()
                    if conversation.started
                },
            }
        state = {"users": [asdict(user) for user in self.users.values()], "bots": bots}
        partial = self.state_file.with_name(self.state_file.name + ".partial")
        partial.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(partial, self.state_file)

    def _restore(self, state_file: Path) -> None:
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            for fields in state["users"]:
                self.users[fields["id"]] = User(**fields)
            for bot_id, saved in state["bots"].items():
                bot = self.bot(int(bot_id))
                bot.next_update_id = self._next_update_ids[bot.id] = saved["next_update_id"]
                bot.blocked_by = set(saved.get("blocked_by", []))
                for user_id, chat in saved.get("chats", {}).items():
                    conversation = self.conversation(bot, self.users[int(user_id)])
                    conversation.started = True
                    conversation.last_message_id = chat["last_message_id"]
                    conversation.event_seq = chat["event_seq"]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"{state_file} is not a sandbox state file ({error!r}); delete it to start afresh"
            ) from None

    def bot_for_token(self, token: str) -> BotAccount:
        match = TOKEN_PATTERN.fullmatch(token)
        if match is None:
            raise UNAUTHORIZED
        return self.bot(int(match.group(1)))

    def bot(self, bot_id: int) -> BotAccount:
        if bot_id not in self.bots:
            next_update_id = self._next_update_ids.get(bot_id, 1)
            self.bots[bot_id] = BotAccount(bot_id, next_update_id, self.remember)
        return self.bots[bot_id]

    def conversation(self, bot: BotAccount, user: User) -> Conversation:
        if user.id not in bot.conversations:
            bot.conversations[user.id] = Conversation(bot, user)
        return bot.conversations[user.id]

    def store_file(
        self, data: bytes, file_name: str, mime_type: str, folder: str, size: tuple[int, int]
    ) -> StoredFile:
        number = next(self._file_numbers)
        extension = file_name.rsplit(".", 1)[-1] if "." in file_name else "bin"
        stored = StoredFile(
            file_id=f"SBX{number}{secrets.token_urlsafe(16)}",
            file_unique_id=f"U{number}{secrets.token_urlsafe(6)}",
            file_path=f"{folder}/file_{number}.{extension}",
            data=data,
            file_name=file_name,
            mime_type=mime_type,
            width=size[0],
            height=size[1],
        )
        self.files[stored.file_id] = stored
        return stored

    def file_by_path(self, file_path: str) -> StoredFile | None:
        return next((file for file in self.files.values() if file.file_path == file_path), None)

    def take_fault(self, bot_id: int, method: str) -> Fault | None:
        faults = self.faults.get((bot_id, method))
        if not faults:
            return None
        fault = faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.pop(0)
        return fault
