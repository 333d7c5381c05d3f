"""Pushes a bot's pending updates to its webhook, one at a time and in order, as Telegram does."""

from __future__ import annotations

import asyncio
import time

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
    """Runs until cancelled; an update leaves the queue only once the webhook answered 2xx."""
    headers = {SECRET_HEADER: webhook.secret_token} if webhook.secret_token else {}
    delay = retry_delay
    while True:
        if not bot.updates:
            await bot.updates_changed.wait(None)
            continue
        update = bot.updates[0]
        try:
            async with session.post(
                webhook.url, json=update, headers=headers, timeout=REQUEST_TIMEOUT
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    if bot.updates and bot.updates[0] is update:
                        bot.updates.pop(0)
                    delay = retry_delay
                    continue
                error = f"Wrong response from the webhook: {response.status} {response.reason}"
        except (aiohttp.ClientError, TimeoutError) as exception:
            error = f"Connection error: {exception or type(exception).__name__}"
        webhook.last_error_date = int(time.time())
        webhook.last_error_message = error
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_retry_delay)
