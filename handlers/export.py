"""/export: the contacts a person may see (an agent's own, a manager's team's, everything for an
admin) as a CSV document that Excel opens with Vietnamese intact; `/export <stage>` narrows it to
one stage. Parse, call the service, send the file."""

from __future__ import annotations

import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

from aiogram import Router
from aiogram.enums import ChatAction
from aiogram.filters import Command, CommandObject
from aiogram.types import FSInputFile, Message
from aiogram.utils.i18n import gettext as _

from domain.errors import DomainError, StageNotFound
from domain.model import User, utcnow
from domain.ports import ContactFilter
from domain.services.exports import ExportService
from domain.services.stages import StageService
from handlers import render
from handlers.texts import refusal

# The most a bot may send as a document through the Bot API.
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024


def file_name(zone: ZoneInfo) -> str:
    return f"stagekeeper-contacts-{utcnow().astimezone(zone):%Y-%m-%d}.csv"


async def export_command(
    message: Message,
    command: CommandObject,
    user: User,
    exports: ExportService,
    stages: StageService,
    zone: ZoneInfo,
) -> None:
    name = " ".join((command.args or "").split())[:64]
    try:
        where = await exports.selection([name] if name else [])
    except StageNotFound:
        known = ", ".join(render.e(s.name) for s in await stages.ordered())
        await message.answer(
            _("There is no stage called “{name}”. Stages: {stages}").format(
                name=render.e(name), stages=known or "—"
            )
        )
        return
    except DomainError as error:
        await message.answer(refusal(error))
        return
    if where.stage_ids:  # the stage as it is spelled, not as it was typed
        spelled = {s.id: s.name for s in await stages.ordered()}
        name = spelled.get(where.stage_ids[0], name)
    await send_export(message, user, exports, where, name, zone)


async def send_export(
    message: Message,
    user: User,
    exports: ExportService,
    where: ContactFilter,
    selection: str,
    zone: ZoneInfo,
) -> None:
    """Send the contacts of `where` (named `selection`: a stage or a view; empty for the
    whole scope) as a CSV document."""
    if message.bot is not None:
        await message.bot.send_chat_action(message.chat.id, ChatAction.UPLOAD_DOCUMENT)
    # On disk, not in memory: an admin's export of a large database stays out of the heap.
    with tempfile.TemporaryDirectory(prefix="stagekeeper-export-") as folder:
        path = Path(folder) / file_name(zone)
        with path.open("w", encoding="utf-8-sig", newline="") as out:
            result = await exports.export(user, out, where)
        if result.rows == 0:
            text = (
                _("No contact you can see is in {stage}, so there is nothing to export.").format(
                    stage=render.e(selection)
                )
                if selection
                else _("There is no contact you can see yet, so nothing to export. /new adds one.")
            )
            await message.answer(text)
            return
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            await message.answer(
                _(
                    "These {count} contacts make a file too big for Telegram. Export one stage at "
                    "a time (/export <i>stage</i>), or ask an admin for "
                    "<code>stagekeeper export</code>."
                ).format(count=result.rows)
            )
            return
        caption = (
            _("Contacts in {stage} ({count}), as CSV for Excel or Google Sheets.").format(
                count=result.rows, stage=render.e(selection)
            )
            if selection
            else _("Contacts ({count}), as CSV for Excel or Google Sheets.").format(
                count=result.rows
            )
        )
        await message.answer_document(FSInputFile(path, filename=path.name), caption=caption)


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(export_command, Command("export"))
    return router
