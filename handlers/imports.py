"""Import by sending a CSV or XLSX file (admins): every import first runs as a dry run that
shows what it would do, with the rejected rows as a CSV; only a confirmation applies it."""

from __future__ import annotations

import io

from aiogram import Bot, F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder

from domain.errors import DomainError
from domain.model import Role, User
from domain.services.imports import ImportOptions, ImportReport, ImportService
from handlers import render
from handlers.callbacks import ImportCb, UndoOpCb
from handlers.replies import show
from handlers.texts import explain, refusal

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what the Bot API lets a bot download


async def received_file(
    message: Message, user: User, imports: ImportService, bot: Bot, state: FSMContext
) -> None:
    document = message.document
    assert document is not None
    if user.role is not Role.ADMIN:
        await message.answer(_("Only admins import files."))
        return
    if (document.file_size or 0) > DOWNLOAD_LIMIT:
        await message.answer(_("The file is over 20 MB; import it with stagekeeper import."))
        return
    data = await _download(bot, document.file_id)
    try:
        report = await imports.run(user, data, ImportOptions(dry_run=True))
    except DomainError as error:
        await message.answer(
            _("I cannot import {file}: {reason}").format(
                file=render.e(document.file_name or "the file"),
                reason=render.e(explain(error, get_i18n().current_locale)),
            )
        )
        return
    await state.update_data(import_file=document.file_id, import_name=document.file_name)
    missing = any("--create-" in e.reason for e in report.errors)
    keys = InlineKeyboardBuilder()
    keys.button(text="✅ " + _("Import"), callback_data=ImportCb(go=1))
    if missing:
        keys.button(
            text="✅ " + _("Import, adding missing stages and people"),
            callback_data=ImportCb(go=1, create=1),
        )
    keys.button(text="✖️ " + _("Cancel"), callback_data=ImportCb(go=0))
    keys.adjust(1)
    await message.answer(_summary(report, dry=True), reply_markup=keys.as_markup())
    if report.errors:
        await message.answer_document(
            BufferedInputFile(report.error_csv(), filename="rejected-rows.csv"),
            caption=_("The rejected rows, with the column and the reason."),
        )


async def confirmed(
    query: CallbackQuery,
    callback_data: ImportCb,
    user: User,
    imports: ImportService,
    bot: Bot,
    state: FSMContext,
) -> None:
    data = await state.get_data()
    file_id = data.get("import_file")
    if user.role is not Role.ADMIN or not file_id:
        await query.answer(_("Send the file again."), show_alert=True)
        return
    await state.update_data(import_file=None)
    if not callback_data.go:
        await show(query, _("Import cancelled; nothing changed."), None)
        return
    await query.answer()
    await show(query, _("Importing…"), None, answered=True)
    options = ImportOptions(
        create_stages=bool(callback_data.create), create_owners=bool(callback_data.create)
    )
    try:
        report = await imports.run(user, await _download(bot, file_id), options)
    except DomainError as error:
        await show(query, refusal(error), None, answered=True)
        return
    keys = InlineKeyboardBuilder()
    if report.operation_id is not None:
        keys.button(text="↩ " + _("Undo"), callback_data=UndoOpCb(id=report.operation_id))
    await show(query, _summary(report, dry=False), keys.as_markup(), answered=True)


def _summary(report: ImportReport, *, dry: bool) -> str:
    counts = {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": report.rejected,
    }
    if dry:
        lines = [
            _(
                "Dry run: {created} to create, {updated} to update, {unchanged} unchanged, "
                "{rejected} rejected. Nothing has changed yet."
            ).format(**counts)
        ]
    else:
        lines = [
            _(
                "Imported: {created} created, {updated} updated, {unchanged} unchanged, "
                "{rejected} rejected."
            ).format(**counts)
        ]
    if report.stages_created:
        lines.append(
            _("New stages: {names}").format(names=render.e(", ".join(report.stages_created)))
        )
    if report.unknown_columns:
        lines.append(
            _("Ignored columns: {names}").format(names=render.e(", ".join(report.unknown_columns)))
        )
    return render.fit(lines)


async def _download(bot: Bot, file_id: str) -> bytes:
    buffer = io.BytesIO()
    await bot.download(file_id, destination=buffer)
    return buffer.getvalue()


def build_router() -> Router:
    router = Router(name=__name__)
    router.message.register(received_file, F.document)
    router.callback_query.register(confirmed, ImportCb.filter())
    return router
