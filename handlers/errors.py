"""The last resort: an unexpected error is logged with its update id, and the user gets a short
apology instead of silence; a button no handler takes is answered too. A busy, full or failing
database is no bug: the person is told that nothing was changed and what to do, and the next
update is handled as usual."""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Router
from aiogram.types import CallbackQuery, ErrorEvent
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from domain.ports import DatabaseFull, DatabaseUnavailable
from handlers.i18n import language_of

log = logging.getLogger(__name__)


async def apologize(event: ErrorEvent, **data: Any) -> None:
    update, error = event.update, event.exception
    if isinstance(error, DatabaseUnavailable):
        # The unit of work was rolled back: what the log needs is what the database said.
        log.warning("update %s: %s (%s)", update.update_id, error.message, error.detail)
    else:
        log.exception("update %s failed", update.update_id, exc_info=error)
    i18n: I18n | None = data.get("i18n")
    if i18n is None:  # a dispatcher not built by BotRuntime, which always gives it
        return
    sender = data.get("event_from_user")
    language = language_of(data.get("user"), sender.language_code if sender else None, "en")
    with i18n.context(), i18n.use_locale(language):
        apology = _apology(error)
    if update.callback_query is not None:
        await update.callback_query.answer(apology, show_alert=True)
    elif update.message is not None:
        await update.message.answer(apology)


def _apology(error: Exception) -> str:
    if isinstance(error, DatabaseFull):
        return _("Sorry, the server's disk is full, so nothing was changed. Please tell an admin.")
    if isinstance(error, DatabaseUnavailable):
        return _(
            "Sorry, the database is busy right now, so nothing was changed. "
            "Please try again in a moment."
        )
    return _("Sorry, something went wrong on our side. Please try again.")


async def stale_button(query: CallbackQuery) -> None:
    """A button no handler takes: from an old version of the bot, or forged."""
    await query.answer(_("This button is no longer valid."), show_alert=True)


def build_router() -> Router:
    """Goes last: what no other router took."""
    router = Router(name=__name__)
    router.errors.register(apologize)
    router.callback_query.register(stale_button)
    return router
