"""The last resort: an unexpected error is logged with its update id, and the user gets a short
apology instead of silence."""

from __future__ import annotations

import logging

from aiogram import Router
from aiogram.types import ErrorEvent

log = logging.getLogger(__name__)

APOLOGY = "Sorry, something went wrong on our side. Nothing was changed; please try again."


async def apologize(event: ErrorEvent) -> None:
    update = event.update
    log.exception("update %s failed", update.update_id, exc_info=event.exception)
    if update.callback_query is not None:
        await update.callback_query.answer(APOLOGY, show_alert=True)
    elif update.message is not None:
        await update.message.answer(APOLOGY)


def build_router() -> Router:
    router = Router(name=__name__)
    router.errors.register(apologize)
    return router
