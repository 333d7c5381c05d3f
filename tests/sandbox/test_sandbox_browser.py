"""The web chat in headless Chromium, against a tiny bot long-polling the emulator."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from tests.conftest import require

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path("/tmp/sandbox-web-chat.png")
SCREENSHOT_BEFORE_CLICK = Path("/tmp/sandbox-web-chat-card.png")

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def chromium() -> None:
    """Debian's Chromium (Playwright drives it; its own browser download is not needed)."""
    require(CHROMIUM.exists(), f"Chromium is not at {CHROMIUM}: `apt-get install chromium`")


async def tiny_bot(sandbox: Any) -> None:
    """Answers /start with a formatted card and a button; the button moves the lead."""
    offset = 0
    while True:
        for update in await sandbox.api("getUpdates", offset=offset, timeout=5):
            offset = update["update_id"] + 1
            if "message" in update and update["message"].get("text") == "/start":
                await sandbox.api(
                    "sendMessage",
                    chat_id=update["message"]["chat"]["id"],
                    text="<b>Nguyễn Văn An</b>\nStage: <i>Lead</i> <code>#17</code>",
                    parse_mode="HTML",
                    reply_markup={
                        "inline_keyboard": [
                            [{"text": "➡ Qualified", "callback_data": "stage:17:2"}]
                        ]
                    },
                )
            elif "callback_query" in update:
                query = update["callback_query"]
                await sandbox.api(
                    "answerCallbackQuery", callback_query_id=query["id"], text="Moved to Qualified"
                )
                await sandbox.api(
                    "editMessageText",
                    chat_id=query["message"]["chat"]["id"],
                    message_id=query["message"]["message_id"],
                    text="<b>Nguyễn Văn An</b>\nStage: <i>Qualified</i> ✅",
                    parse_mode="HTML",
                )


async def test_user_starts_the_bot_and_presses_a_button(sandbox):
    bot = asyncio.create_task(tiny_bot(sandbox))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 760})
            await page.goto(sandbox.base_url + "/")
            await page.fill("#user-id", "4242")
            await page.fill("#user-name", "Lan")
            await page.select_option("#user-language", "vi")
            await page.click("#user-save")

            await page.fill("#text-input", "/start")
            await page.press("#text-input", "Enter")
            card = page.locator(".message.bot").first
            await card.locator("strong", has_text="Nguyễn Văn An").wait_for(timeout=5000)
            assert await card.locator("em").inner_text() == "Lead"
            assert await page.locator(".message.user .bubble .text").inner_text() == "/start"

            await page.screenshot(path=str(SCREENSHOT_BEFORE_CLICK))
            await card.get_by_role("button", name="➡ Qualified").click()
            await card.locator("em", has_text="Qualified").wait_for(timeout=5000)
            await page.locator("#toast", has_text="Moved to Qualified").wait_for(timeout=5000)
            assert await page.locator(".message.bot").count() == 1  # edited in place
            assert await card.locator(".keyboard").count() == 0  # the edit removed the keyboard
            assert "edited" in await card.locator(".meta").inner_text()
            await page.screenshot(path=str(SCREENSHOT))
        finally:
            await browser.close()
            bot.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bot

    users = await (await sandbox.client.get("/sandbox/users")).json()
    assert users["users"][0]["language_code"] == "vi"
