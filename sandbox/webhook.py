"""Pushes a bot's pending updates to its webhook as Telegram does: up to `max_connections`
requests at once, but one chat's updates one at a time and in order (the next only after the
webhook acknowledged the previous one). An update leaves the queue only once the webhook answered
2xx; until then it is retried, later and later."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable
from typing import Any

import aiohttp

from sandbox.state import BotAccount, Webhook

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30)


async def deliver_updates(
    bot: BotAccount,
    webhook: Webhook,
    session: aiohttp.ClientSession,
    retry_delay: float,
    max_retry_delay: float,
) -> None:
    """Runs until cancelled, with one connection task per allowed connection."""
    busy: set[Hashable] = set()  # the chats with an update in flight
    async with asyncio.TaskGroup() as connections:
        for _ in range(webhook.max_connections):
            connections.create_task(
                _connection(bot, webhook, session, busy, retry_delay, max_retry_delay)
            )


async def _connection(
    bot: BotAccount,
    webhook: Webhook,
    session: aiohttp.ClientSession,
    busy: set[Hashable],
    retry_delay: float,
    max_retry_delay: float,
) -> None:
    """Delivers, one after another, the oldest pending update of a chat no other connection
    is delivering to."""
    while True:
        update = next((u for u in bot.updates if chat_of(u) not in busy), None)
        if update is None:
            await bot.updates_changed.wait(None)
            continue
        chat = chat_of(update)
        busy.add(chat)
        try:
            await _deliver(update, webhook, session, retry_delay, max_retry_delay)
            for index, pending in enumerate(bot.updates):
                if pending is update:  # not another copy of it, redelivered meanwhile
                    del bot.updates[index]
                    break
        finally:
            busy.discard(chat)
        bot.updates_changed.fire()  # the chat's next update may go now


async def _deliver(
    update: dict[str, Any],
    webhook: Webhook,
    session: aiohttp.ClientSession,
    retry_delay: float,
    max_retry_delay: float,
) -> None:
    """Returns once the webhook answered 2xx."""
    headers = {SECRET_HEADER: webhook.secret_token} if webhook.secret_token else {}
    delay = retry_delay
    while True:
        try:
            async with session.post(
                webhook.url, json=update, headers=headers, timeout=REQUEST_TIMEOUT
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return
                error = f"Wrong response from the webhook: {response.status} {response.reason}"
        except (aiohttp.ClientError, TimeoutError) as exception:
            error = f"Connection error: {exception or type(exception).__name__}"
        webhook.last_error_date = int(time.time())
        webhook.last_error_message = error
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_retry_delay)


def chat_of(update: dict[str, Any]) -> Hashable:
    """The chat an update belongs to (its sender's for one without a chat, such as an inline
    callback query); an update of neither stands alone."""
    for kind, payload in update.items():
        if kind == "update_id" or not isinstance(payload, dict):
            continue
        chat = payload.get("chat") or (payload.get("message") or {}).get("chat")
        sender = payload.get("from")
        if isinstance(chat, dict) and "id" in chat:
            return int(chat["id"])
        if isinstance(sender, dict) and "id" in sender:
            return int(sender["id"])
    return ("update", update.get("update_id"))
