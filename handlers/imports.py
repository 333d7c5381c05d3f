"""Import by sending a CSV or XLSX file (admins): every import first runs as a dry run that
shows what it would do, with the rejected rows as a CSV; only a confirmation applies it. A long
run shows its progress in one message, edited as it goes and at last into the result."""

from __future__ import annotations

import io

from aiogram import Bot, F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, CallbackQuery, Message, Update
from aiogram.utils.i18n import get_i18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from domain.errors import DomainError, MissingIdentifier
from domain.imports import CUSTOM_PREFIX, IGNORE
from domain.model import CustomFieldDef, Role, User
from domain.services.fields import FieldService
from domain.services.imports import (
    ImportOptions,
    ImportProgress,
    ImportReport,
    ImportService,
    Phase,
    Progress,
)
from handlers import render
from handlers.callbacks import ImportCb, ImportMapCb, UndoOpCb
from handlers.keys import Keys
from handlers.progress import ProgressMessage, ProgressPace
from handlers.replies import show
from handlers.texts import explain, refusal

DOWNLOAD_LIMIT = 20 * 1024 * 1024  # what the Bot API lets a bot download
# What an unknown column may be mapped to from chat (the rest of `--map` is for the CLI).
MAP_TARGETS = (
    ("name", __("Name")),
    ("phone", __("Phone")),
    ("email", __("Email")),
    ("external_id", __("External id")),
    ("company", __("Company")),
    ("source", __("Source")),
    ("owner", __("Owner")),
    ("stage", __("Stage")),
    ("value", __("Value")),
    ("tags", __("Tags")),
    ("created_at", __("Created on")),
)
# How the built-in fields a custom field may be shadowed by are named in a dry run's report.
BUILT_IN_LABELS = {
    **dict(MAP_TARGETS),
    "stage_changed_at": __("Stage changed on"),
    "lost_reason": __("Lost reason"),
    "first_name": __("First name"),
    "last_name": __("Last name"),
    "family_name": __("Family name"),
}


async def received_file(
    message: Message,
    user: User,
    imports: ImportService,
    bot: Bot,
    state: FSMContext,
    pace: ProgressPace,
) -> None:
    document = message.document
    assert document is not None
    if user.role is not Role.ADMIN:
        await message.answer(_("Only admins import files."))
        return
    if (document.file_size or 0) > DOWNLOAD_LIMIT:
        await message.answer(_("The file is over 20 MB; import it with stagekeeper import."))
        return
    await state.update_data(
        import_file=document.file_id,
        import_name=document.file_name,
        import_map={},
        import_taken_by=None,
    )
    await _dry_run(message, user, imports, bot, state, pace)


async def _dry_run(
    message: Message,
    user: User,
    imports: ImportService,
    bot: Bot,
    state: FSMContext,
    pace: ProgressPace,
) -> None:
    """Run the pending import as a dry run (with the columns mapped so far) and show what it
    would do, with buttons to apply it, to map the columns it does not know, or to cancel."""
    data = await state.get_data()
    mapping: dict[str, str] = data.get("import_map") or {}
    name = render.e(data.get("import_name") or _("the file"))
    progress = ProgressMessage(message, pace)
    try:
        data_file = await _download(bot, data["import_file"])
        report = await imports.run(
            user,
            data_file,
            ImportOptions(dry_run=True, mapping=mapping),
            _progress(progress, dry=True),
        )
    except MissingIdentifier as error:
        await state.update_data(import_columns=error.columns)
        keys = Keys()
        if error.columns:
            keys.button(text="🔗 " + _("Map the columns"), callback_data=ImportMapCb(col=0, to=""))
        keys.button(text="✖️ " + _("Cancel"), callback_data=ImportCb(go=0))
        keys.adjust(1)
        await progress.finish(
            _(
                "{file} has no phone, email or external id column that I recognise. "
                "Tell me which column is which:"
            ).format(file=name)
            if error.columns
            else _("I cannot import {file}: {reason}").format(
                file=name, reason=render.e(explain(error, get_i18n().current_locale))
            ),
            keys.as_markup(),
        )
        return
    except DomainError as error:
        await state.update_data(import_file=None)
        await progress.finish(
            _("I cannot import {file}: {reason}").format(
                file=name, reason=render.e(explain(error, get_i18n().current_locale))
            )
        )
        return
    await state.update_data(import_columns=report.unknown_columns)
    missing = any("--create-" in e.reason for e in report.errors)
    keys = Keys()
    keys.button(text="✅ " + _("Import"), callback_data=ImportCb(go=1))
    if missing:
        keys.button(
            text="✅ " + _("Import, adding missing stages and people"),
            callback_data=ImportCb(go=1, create=1),
        )
    if report.unknown_columns:
        keys.button(
            text="🔗 " + _("Map the ignored columns"), callback_data=ImportMapCb(col=0, to="")
        )
    keys.button(text="✖️ " + _("Cancel"), callback_data=ImportCb(go=0))
    keys.adjust(1)
    await progress.finish(_summary(report, dry=True), keys.as_markup())
    if report.errors:
        await message.answer_document(
            BufferedInputFile(report.error_csv(), filename="rejected-rows.csv"),
            caption=_("The rejected rows, with the column and the reason."),
        )


async def map_column(
    query: CallbackQuery,
    callback_data: ImportMapCb,
    user: User,
    imports: ImportService,
    fields: FieldService,
    bot: Bot,
    state: FSMContext,
    pace: ProgressPace,
) -> None:
    """One column at a time: ask what it is; the answer goes into the mapping; after the last
    column, the dry run again."""
    data = await state.get_data()
    columns: list[str] = data.get("import_columns") or []
    if user.role is not Role.ADMIN or not data.get("import_file"):
        await query.answer(_("Send the file again."), show_alert=True)
        return
    if not 0 <= callback_data.col < len(columns):
        await query.answer(_("This list is out of date; ask again."), show_alert=True)
        return
    defined = await fields.list()
    column = columns[callback_data.col]
    if callback_data.to:
        target = _target(callback_data.to, column, defined)
        if target is None:
            await query.answer(_("This list is out of date; ask again."), show_alert=True)
            return
        mapping = dict(data.get("import_map") or {})
        mapping[column] = target
        await state.update_data(import_map=mapping)
        if callback_data.col + 1 == len(columns):
            await query.answer()
            await show(query, _("Columns mapped; checking the file again…"), None, answered=True)
            assert isinstance(query.message, Message)
            await _dry_run(query.message, user, imports, bot, state, pace)
            return
        column = columns[callback_data.col + 1]
        callback_data = ImportMapCb(col=callback_data.col + 1, to="")
    choices = [
        *MAP_TARGETS,
        *((f"f{f.id}", "🗂 " + f.name) for f in defined),
        ("custom", "➕ " + _("New custom field")),
        (IGNORE, "🚫 " + _("Leave it out")),
    ]
    keys = Keys()
    for code, label in choices:
        keys.button(text=str(label), callback_data=ImportMapCb(col=callback_data.col, to=code))
    keys.adjust(3)
    text = _("Column {number} of {total}: “{column}”. What is in it?").format(
        number=callback_data.col + 1, total=len(columns), column=render.e(column)
    )
    await show(query, text, keys.as_markup())


def _target(code: str, column: str, defined: list[CustomFieldDef]) -> str | None:
    if code in dict(MAP_TARGETS) or code == IGNORE:
        return code
    if code == "custom":
        return CUSTOM_PREFIX + column
    field = next((f for f in defined if f"f{f.id}" == code), None)
    return CUSTOM_PREFIX + field.key if field else None


async def confirmed(
    query: CallbackQuery,
    callback_data: ImportCb,
    user: User,
    imports: ImportService,
    bot: Bot,
    state: FSMContext,
    pace: ProgressPace,
    event_update: Update,
) -> None:
    data = await state.get_data()
    file_id = data.get("import_file")
    if user.role is not Role.ADMIN or not file_id or query.message is None:
        await query.answer(_("Send the file again."), show_alert=True)
        return
    # The file stays pending until its import is done, so that this update, delivered again
    # after a worker died mid-way, still finds it; another tap on the button does not.
    if data.get("import_taken_by") not in (None, event_update.update_id):
        await query.answer(_("This file is being imported already."), show_alert=True)
        return
    if not callback_data.go:
        await state.update_data(import_file=None)
        await show(query, _("Import cancelled; nothing changed."), None)
        return
    await state.update_data(import_taken_by=event_update.update_id)
    await query.answer()
    await show(query, _("Importing…"), None, answered=True)
    shown = query.message if isinstance(query.message, Message) else None
    progress = ProgressMessage(query.message, pace, editing=shown)
    options = ImportOptions(
        mapping=data.get("import_map") or {},
        create_stages=bool(callback_data.create),
        create_owners=bool(callback_data.create),
    )
    try:
        data_file = await _download(bot, file_id)
        report = await imports.run(user, data_file, options, _progress(progress, dry=False))
    except DomainError as error:
        await state.update_data(import_file=None, import_taken_by=None)
        await progress.finish(refusal(error))
        return
    await state.update_data(import_file=None, import_taken_by=None)
    keys = Keys()
    if report.operation_id is not None:
        keys.button(text="↩ " + _("Undo"), callback_data=UndoOpCb(id=report.operation_id))
    await progress.finish(_summary(report, dry=False), keys.as_markup())


def _progress(message: ProgressMessage, *, dry: bool) -> Progress:
    """What the import service reports, as the text of the progress message."""

    async def report(step: ImportProgress) -> None:
        counts = {"read": render.number(step.read), "done": render.number(step.applied)}
        if step.phase is Phase.FINISHING:
            text = (
                _("Checking… all {read} rows checked; adding up.")
                if dry
                else _("Importing… all {read} rows applied; saving.")
            )
        else:
            text = (
                _("Checking… {read} rows read, {done} checked.")
                if dry
                else _("Importing… {read} rows read, {done} applied.")
            )
        await message.report(text.format(**counts))

    return report


def _summary(report: ImportReport, *, dry: bool) -> str:
    counts = {
        "created": render.number(report.created),
        "updated": render.number(report.updated),
        "unchanged": render.number(report.unchanged),
        "rejected": render.number(report.rejected),
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
    if report.other_sheets:
        lines.append(
            _("Read the first sheet, “{sheet}”; not read: {others}.").format(
                sheet=render.e(report.sheet or ""), others=render.e(", ".join(report.other_sheets))
            )
        )
    if report.stages_created:
        lines.append(
            _("New stages: {names}").format(names=render.e(", ".join(report.stages_created)))
        )
    if report.field_columns:
        names = ", ".join(
            name if column == name else f"{column} → {name}"
            for column, name in report.field_columns
        )
        lines.append(_("Read as custom fields: {names}").format(names=render.e(names)))
    for column, built_in, name in report.shadowed_columns:
        if built_in == IGNORE:
            text = _(
                "“{column}” is left out as a column of our own export, not read as the "
                "custom field “{field}”."
            )
        else:
            text = _(
                "“{column}” was read as the built-in field {built_in}, not as the custom "
                "field “{field}”."
            )
        label = BUILT_IN_LABELS.get(built_in, built_in)
        lines.append(
            text.format(column=render.e(column), built_in=str(label), field=render.e(name))
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
    router.callback_query.register(map_column, ImportMapCb.filter())
    return router
