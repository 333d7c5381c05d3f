"""The `stagekeeper` command line (DESIGN §4). Thin: parse, call a service, print.

Exit codes: 0 done; 1 refused (the one-line reason is on stderr, and with --json also as JSON on
stdout); 2 the command itself is malformed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import io
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.container import Services, build_services
from bot.report_text import report_json, report_text
from bot.schemas import ContactOut
from bot.settings import Settings
from domain.access import SYSTEM
from domain.errors import DomainError, DuplicateContact
from domain.imports import IDENTIFIERS, IGNORE, parse_map
from domain.model import ApiKey, Category, CustomFieldDef, FieldKind
from domain.ports import DatabaseUnavailable
from domain.services.contacts import ContactDetails, ContactDraft
from domain.services.imports import ImportOptions, ImportProgress, Phase, parse_match, parse_mode
from domain.services.stages import StageSummary
from domain.stages import TEMPLATES, parse_category
from storage import migrate
from storage.db import unavailable

SANDBOX_DATABASE = "stagekeeper-sandbox.db"
_NEEDS_REASON = {"lost_reason_required", "reason_required"}
_HINTS = {"undo_conflicts": " Run again with --yes to revert the others."}

Handler = Callable[[argparse.Namespace, Services], Awaitable[Any]]


class Refused(Exception):
    """A command-line level refusal (not a domain rule), e.g. a database without a schema."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage and the reason
        return int(exit_.code or 0)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    if getattr(args, "own_database", False) and not args.database_url:
        if args.demo:
            _reset_sandbox_database()
        args.database_url = f"sqlite+aiosqlite:///{SANDBOX_DATABASE}"
    try:
        settings = Settings(**({"database_url": args.database_url} if args.database_url else {}))
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"]).upper()
        return _refuse(args, f"configuration: {field}: {problem['msg']}", "configuration")
    try:
        result = asyncio.run(_run(args, settings))
    except DomainError as error:
        extra = {"existing_id": error.existing_id} if isinstance(error, DuplicateContact) else {}
        hint = " Give it with --reason." if error.code in _NEEDS_REASON else ""
        hint = _HINTS.get(error.code, hint)
        return _refuse(args, error.message + hint, error.code, **extra)
    except Refused as error:
        return _refuse(args, str(error), "refused")
    except DatabaseUnavailable as error:
        return _refuse(args, error.message, error.code)
    except KeyboardInterrupt:
        return 130
    _print(args, result)
    return 0


async def _run(args: argparse.Namespace, settings: Settings) -> Any:
    services = build_services(settings)
    try:
        if args.needs_schema and await migrate.pending(services.engine):
            raise Refused("the database has no current schema; run `stagekeeper init` first")
        return await args.handler(args, services)
    except Exception as error:
        # What runs outside a unit of work (the schema check, the migrations) meets a busy or
        # full database as the driver's error.
        trouble = unavailable(error)
        if trouble is None:
            raise
        raise trouble from error
    finally:
        await services.close()


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="default: DATABASE_URL, else ./stagekeeper.db")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")

    parser = argparse.ArgumentParser(
        prog="stagekeeper", description="Stagekeeper, a sales CRM that lives in Telegram."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(
        group: Any, name: str, handler: Handler, help_text: str, *, needs_schema: bool = True
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(name, parents=[common], help=help_text)
        sub.set_defaults(handler=handler, needs_schema=needs_schema)
        return sub

    init = command(
        commands, "init", _init, "create the database and its stages", needs_schema=False
    )
    init.add_argument("--template", choices=list(TEMPLATES), default="none")
    init.add_argument("--admin", type=int, action="append", default=[], metavar="TELEGRAM_ID")

    db = commands.add_parser("db", help="database schema").add_subparsers(metavar="ACTION")
    command(db, "upgrade", _db_upgrade, "apply pending migrations", needs_schema=False)

    stages = commands.add_parser("stages", help="lifecycle stages").add_subparsers(metavar="ACTION")
    command(stages, "list", _stages_list, "stages in display order with contact counts")
    add = command(stages, "add", _stages_add, "add a stage")
    add.add_argument("name")
    add.add_argument("--category", required=True, type=_category)
    add.add_argument("--position", type=int, help="1-based place within its category")
    rename = command(stages, "rename", _stages_rename, "rename a stage")
    rename.add_argument("name")
    rename.add_argument("new_name")
    move = command(stages, "move", _stages_move, "change a stage's place within its category")
    move.add_argument("name")
    move.add_argument("--position", type=int, required=True)
    recategorize = command(
        stages, "recategorize", _stages_recategorize, "make a stage open, won or lost"
    )
    recategorize.add_argument("name")
    recategorize.add_argument("--category", required=True, type=_category)
    delete = command(stages, "delete", _stages_delete, "delete a stage, moving its contacts")
    delete.add_argument("name")
    target = delete.add_mutually_exclusive_group()
    target.add_argument("--reassign-to", metavar="OTHER")
    target.add_argument("--no-stage", action="store_true")
    delete.add_argument("--reason", help="needed when the contacts move into a lost stage")

    contacts = commands.add_parser("contacts", help="contacts").add_subparsers(metavar="ACTION")
    add_contact = command(contacts, "add", _contacts_add, "add a contact (duplicates refused)")
    add_contact.add_argument("name")
    for option in ("phone", "email", "external-id", "company", "source", "stage"):
        add_contact.add_argument(f"--{option}")
    add_contact.add_argument("--owner", metavar="NAME_OR_TELEGRAM_ID")
    add_contact.add_argument("--value", help="deal amount")
    add_contact.add_argument("--reason", help="lost reason, when starting in a lost stage")
    find = command(contacts, "find", _contacts_find, "search by phone, email, id, name, company")
    find.add_argument("query")
    find.add_argument("--limit", type=int, default=20)
    set_stage = command(contacts, "set-stage", _contacts_set_stage, "move a contact")
    set_stage.add_argument("contact", help="phone, email, external id or #id")
    set_stage.add_argument("stage")
    set_stage.add_argument("--reason")

    export = command(commands, "export", _export, "write contacts to a CSV file for Excel")
    export.add_argument("file", help="the CSV file to write (UTF-8 with BOM), or - for stdout")
    narrow = export.add_mutually_exclusive_group()
    narrow.add_argument(
        "--stage", action="append", default=[], metavar="NAME", help="only this stage (repeatable)"
    )
    narrow.add_argument("--view", metavar="NAME", help="only the contacts of this saved view")

    fields = commands.add_parser("fields", help="custom fields").add_subparsers(metavar="ACTION")
    command(fields, "list", _fields_list, "custom fields and their kinds")
    add_field = command(fields, "add", _fields_add, "define a custom field")
    add_field.add_argument("name")
    add_field.add_argument("--kind", choices=[kind.value for kind in FieldKind], default="text")
    add_field.add_argument(
        "--choice", action="append", default=[], metavar="CHOICE", help="for --kind choice"
    )
    delete_field = command(
        fields, "delete", _fields_delete, "forget a field (contacts keep their values)"
    )
    delete_field.add_argument("name")

    imports = command(commands, "import", _import, "import contacts from a CSV or XLSX file")
    imports.add_argument("file")
    imports.add_argument("--mode", choices=["add", "update", "upsert"], default="upsert")
    imports.add_argument(
        "--match",
        action="append",
        metavar="FIELDS",
        help="phone,email,external_id (default: all three)",
    )
    imports.add_argument("--map", action="append", default=[], metavar="COLUMN=FIELD")
    imports.add_argument("--create-stages", action="store_true")
    imports.add_argument("--create-owners", action="store_true")
    imports.add_argument("--dry-run", action="store_true", help="report what would happen")
    imports.add_argument("--errors", metavar="FILE", help="write rejected rows as CSV here")

    apikeys = commands.add_parser("apikeys", help="keys of the HTTP API").add_subparsers(
        metavar="ACTION"
    )
    create_key = command(apikeys, "create", _apikeys_create, "a new key, shown once")
    create_key.add_argument("name")
    command(apikeys, "list", _apikeys_list, "keys, revoked ones included")
    revoke_key = command(apikeys, "revoke", _apikeys_revoke, "stop a key from working")
    revoke_key.add_argument("name")
    report = command(commands, "report", _report, "a report, for scripts and checks")
    report.add_argument("kind", choices=list(REPORTS))
    report.add_argument("--from", dest="first", type=_day, metavar="YYYY-MM-DD")
    report.add_argument("--to", dest="last", type=_day, metavar="YYYY-MM-DD")

    command(commands, "operations", _operations, "recent bulk operations, to undo one")
    undo = command(commands, "undo", _undo, "undo a bulk operation")
    undo.add_argument("operation_id", type=int)
    undo.add_argument("--yes", action="store_true", help="also when some contacts changed since")

    digest = command(
        commands, "digest", _digest, "send today's morning messages at once, to whoever is due"
    )
    digest.add_argument("--now", action="store_true", required=True, help="send them now")
    digest.add_argument(
        "--dry-run", action="store_true", help="print what would be sent; send and record nothing"
    )

    command(commands, "run", _run_polling, "run the bot with long polling")
    command(commands, "webhook", _run_webhook, "run the bot behind a Telegram webhook")
    sandbox = command(
        commands,
        "sandbox",
        _run_sandbox,
        "a local Telegram with the bot and a web chat (own SQLite file unless --database-url)",
        needs_schema=False,
    )
    sandbox.add_argument("--demo", action="store_true", help="start afresh with demo data")
    sandbox.add_argument("--port", type=int, default=8081)
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.set_defaults(own_database=True)
    return parser


def _day(raw: str) -> date:
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a date (YYYY-MM-DD)") from None


def _category(raw: str) -> Category:
    try:
        return parse_category(raw)
    except DomainError as error:
        raise argparse.ArgumentTypeError(error.message) from None


async def _init(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    await migrate.upgrade(services.engine)
    created = await services.stages.apply_template(SYSTEM, args.template)
    admins = await services.users.ensure_admins(args.admin)
    summaries = await services.stages.summaries()
    return {
        "database": services.engine.url.render_as_string(hide_password=True),
        "template": args.template,
        "stages_created": len(created),
        "stages": [_stage_json(s) for s in summaries],
        "admins": [a.telegram_id for a in admins],
        "_text": _init_text(args.template, len(created), summaries),
    }


def _init_text(template: str, created: int, summaries: list[StageSummary]) -> str:
    if created:
        head = f"Database ready; created the {created} stages of the {template!r} template:"
    elif summaries:
        head = "Database ready; it already has stages, so no template was applied:"
    else:
        head = "Database ready, with no stages yet (add some with `stagekeeper stages add`)."
    return "\n".join([head, *_stage_lines(summaries)]) if summaries else head


async def _db_upgrade(args: argparse.Namespace, services: Services) -> dict[str, Any]:
    await migrate.upgrade(services.engine)
    return {"upgraded": True, "_text": "Database schema is up to date."}


async def _stages_list(args: argparse.Namespace, services: Services) -> Any:
    summaries = await services.stages.summaries()
    without = await services.stages.contacts_without_stage()
    lines = _stage_lines(summaries) or ["No stages yet."]
    if without:
        lines.append(f"  (no stage)  {without} contact(s)")
    if not any(s.stage.category is Category.WON for s in summaries):
        lines.append("Note: no stage is won yet, so reports cannot count conversions.")
    return _Output([_stage_json(s) for s in summaries], "\n".join(lines))


async def _stages_add(args: argparse.Namespace, services: Services) -> Any:
    stage = await services.stages.add(SYSTEM, args.name, args.category, args.position)
    return _Output(
        _stage_json(StageSummary(stage, 0)), f"Added {stage.name!r} ({stage.category.value})."
    )


async def _stages_rename(args: argparse.Namespace, services: Services) -> Any:
    stage = await services.stages.rename(SYSTEM, args.name, args.new_name)
    return _Output(_stage_json(StageSummary(stage, 0)), f"Renamed to {stage.name!r}.")


async def _stages_move(args: argparse.Namespace, services: Services) -> Any:
    stage = await services.stages.move(SYSTEM, args.name, args.position)
    text = f"{stage.name!r} is now number {stage.position} of the {stage.category.value} stages."
    return _Output(_stage_json(StageSummary(stage, 0)), text)


async def _stages_recategorize(args: argparse.Namespace, services: Services) -> Any:
    stage = await services.stages.recategorize(SYSTEM, args.name, args.category)
    text = f"{stage.name!r} is now {stage.category.value}; reports, past periods included, follow."
    return _Output(_stage_json(StageSummary(stage, 0)), text)


async def _stages_delete(args: argparse.Namespace, services: Services) -> Any:
    result = await services.stages.delete(
        SYSTEM, args.name, reassign_to=args.reassign_to, no_stage=args.no_stage, reason=args.reason
    )
    where = result.target.name if result.target else "no stage"
    text = f"Deleted {result.stage.name!r}."
    if result.moved:
        text += f" {result.moved} contact(s) moved to {where} (operation #{result.operation_id})."
    return _Output(
        {
            "deleted": result.stage.name,
            "moved": result.moved,
            "target": result.target.name if result.target else None,
            "operation_id": result.operation_id,
        },
        text,
    )


async def _contacts_add(args: argparse.Namespace, services: Services) -> Any:
    draft = ContactDraft(
        name=args.name,
        phone=args.phone,
        email=args.email,
        external_id=args.external_id,
        company=args.company,
        source=args.source,
        stage=args.stage,
        owner=args.owner,
        value=args.value,
        lost_reason=args.reason,
    )
    contact = await services.contacts.add(SYSTEM, draft)
    assert contact.id is not None
    details = await services.contacts.get(SYSTEM, contact.id)
    return _Output(_contact_json(details), f"Added #{contact.id}: {_contact_line(details)}")


async def _contacts_find(args: argparse.Namespace, services: Services) -> Any:
    found = await services.contacts.find(SYSTEM, args.query, limit=max(1, min(args.limit, 500)))
    text = "\n".join(_contact_line(d, with_id=True) for d in found) or "No contact matches."
    return _Output([_contact_json(d) for d in found], text)


async def _contacts_set_stage(args: argparse.Namespace, services: Services) -> Any:
    details = await services.contacts.resolve(SYSTEM, args.contact)
    stage = await services.contacts.stage_by_name(args.stage)
    contact = details.contact
    assert contact.id is not None
    assert stage.id is not None
    result = await services.contacts.set_stage(SYSTEM, contact.id, stage.id, reason=args.reason)
    fresh = await services.contacts.get(SYSTEM, contact.id)
    text = (
        f"#{contact.id} {contact.label()} moved to {stage.name}."
        if result.changed
        else f"#{contact.id} {contact.label()} already is in {stage.name}; nothing changed."
    )
    return _Output({**_contact_json(fresh), "changed": result.changed}, text)


async def _import(args: argparse.Namespace, services: Services) -> Any:
    try:
        data = await asyncio.to_thread(Path(args.file).read_bytes)
    except OSError as error:
        raise Refused(f"cannot read {args.file}: {error.strerror}") from None
    options = ImportOptions(
        mode=parse_mode(args.mode),
        match=parse_match(args.match) if args.match else IDENTIFIERS,
        mapping=parse_map(args.map),
        create_stages=args.create_stages,
        create_owners=args.create_owners,
        dry_run=args.dry_run,
    )
    progress = None if args.json or not sys.stderr.isatty() else _ImportProgressLine(options)
    report = await services.imports.run(SYSTEM, data, options, progress)
    if progress is not None:
        progress.clear()
    if args.errors and report.errors:
        await asyncio.to_thread(Path(args.errors).write_bytes, report.error_csv())
    verb = "Would" if report.dry_run else "Did"
    lines = [
        f"{verb} create {report.created}, update {report.updated}; "
        f"{report.unchanged} unchanged, {report.rejected} rejected."
    ]
    if report.other_sheets:
        lines.append(
            f"Read the first sheet, {report.sheet!r}; not read: {', '.join(report.other_sheets)}."
        )
    if report.stages_created:
        lines.append("New stages: " + ", ".join(report.stages_created))
    if report.owners_created:
        lines.append(f"New owners: {len(report.owners_created)}")
    if report.field_columns:
        lines.append(
            "Read as custom fields: "
            + ", ".join(_as_field(column, name) for column, name in report.field_columns)
        )
    lines += [
        f"Column {column!r} {_as_builtin(builtin)}, not as the custom field {name!r} "
        f'(--map "{column}=custom:{name}" to fill the field instead).'
        for column, builtin, name in report.shadowed_columns
    ]
    if report.unknown_columns:
        lines.append("Ignored columns (map them with --map): " + ", ".join(report.unknown_columns))
    lines += [f"row {e.row}: {e.column or '-'}: {e.reason}" for e in report.errors[:10]]
    if report.operation_id is not None:
        lines.append(f"Operation #{report.operation_id} (stagekeeper undo {report.operation_id}).")
    data_out = {
        "dry_run": report.dry_run,
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "rejected": report.rejected,
        "stages_created": report.stages_created,
        "owners_created": len(report.owners_created),
        "sheet": report.sheet,
        "other_sheets": report.other_sheets,
        "unknown_columns": report.unknown_columns,
        "field_columns": dict(report.field_columns),
        "shadowed_columns": [
            {"column": column, "field": builtin, "custom_field": name}
            for column, builtin, name in report.shadowed_columns
        ],
        "operation_id": report.operation_id,
        "errors": [{"row": e.row, "column": e.column, "reason": e.reason} for e in report.errors],
    }
    return _Output(data_out, "\n".join(lines))


def _as_field(column: str, name: str) -> str:
    return name if column == name else f"{column} → {name}"


def _as_builtin(builtin: str) -> str:
    if builtin == IGNORE:
        return "is left out (one of our export's own columns)"
    return f"was read as the built-in {builtin}"


class _ImportProgressLine:
    """How far an import has come, on one line of the terminal rewritten in place."""

    def __init__(self, options: ImportOptions) -> None:
        self._ending = "rolling back (dry run)" if options.dry_run else "committing"

    async def __call__(self, step: ImportProgress) -> None:
        if step.phase is Phase.FINISHING:
            text = f"Importing: {step.read:,} rows read and applied; {self._ending}…"
        else:
            text = f"Importing: {step.read:,} rows read, {step.applied:,} applied…"
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)

    @staticmethod
    def clear() -> None:
        print("\r\033[K", end="", file=sys.stderr, flush=True)


REPORTS = ("snapshot", "funnel", "sources", "conversion", "leaderboard", "time-in-stage")


async def _report(args: argparse.Namespace, services: Services) -> Any:
    """Reports as an admin sees them (the command line acts with an admin's rights); the
    snapshot is of now and takes no period."""
    reports = services.reports
    period = reports.period(args.first, args.last)
    if args.kind == "snapshot":
        result = await reports.snapshot(SYSTEM)
    else:
        result = await getattr(reports, args.kind.replace("-", "_"))(SYSTEM, period)
    return _Output(report_json(args.kind, result), report_text(result))


async def _operations(args: argparse.Namespace, services: Services) -> Any:
    operations = await services.operations.recent(SYSTEM, limit=20)
    lines = [
        f"#{op.id}  {op.created_at:%Y-%m-%d %H:%M}  {op.kind:<8} {op.description}"
        + ("  (undone)" if op.undone_at else "")
        for op in operations
    ]
    data = [
        {
            "id": op.id,
            "kind": op.kind,
            "description": op.description,
            "contacts": op.contacts,
            "created_at": op.created_at.isoformat(),
            "undone_at": op.undone_at.isoformat() if op.undone_at else None,
        }
        for op in operations
    ]
    return _Output(data, "\n".join(lines) or "No bulk operations yet.")


async def _undo(args: argparse.Namespace, services: Services) -> Any:
    result = await services.operations.undo(SYSTEM, args.operation_id, confirm_changed=args.yes)
    text = f"Undid #{result.operation.id}: {result.reverted} contact(s) reverted."
    if result.kept:
        text += f" {result.kept} changed since and were left as they are."
    return _Output(
        {"id": result.operation.id, "reverted": result.reverted, "kept": result.kept}, text
    )


async def _export(args: argparse.Namespace, services: Services) -> Any:
    """Excel opens UTF-8 with a byte order mark as UTF-8 (Vietnamese intact); the csv module
    ends lines with \\r\\n. A file appears only complete: it is written beside and renamed.
    With `-` the CSV goes to stdout and the summary to stderr."""
    if args.view:
        view = await services.views.named(SYSTEM, args.view)
        assert view.id is not None
        _, where = await services.exports.view_selection(SYSTEM, view.id)
    else:
        where = await services.exports.selection(args.stage)
    if args.file == "-":
        sys.stdout.flush()
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8-sig", newline="")
        try:
            result = await services.exports.export(SYSTEM, out, where)
        finally:
            out.flush()
            out.detach()
    else:
        path = Path(args.file)
        partial = path.with_name(f".{path.name}.part")
        try:
            with partial.open("w", encoding="utf-8-sig", newline="") as out:
                result = await services.exports.export(SYSTEM, out, where)
            partial.replace(path)
        except OSError as error:
            raise Refused(f"cannot write {args.file}: {error.strerror or error}") from None
        finally:
            partial.unlink(missing_ok=True)
    text = f"Exported {result.rows} contact{'' if result.rows == 1 else 's'} to {args.file}."
    return _Output({"file": args.file, "rows": result.rows}, text, to_stderr=args.file == "-")


async def _fields_list(args: argparse.Namespace, services: Services) -> Any:
    defined = await services.fields.list()
    lines = [
        f"  {field.name}  {field.kind.value}"
        + (f": {', '.join(field.choices)}" if field.choices else "")
        for field in defined
    ]
    return _Output(
        [_field_json(field) for field in defined], "\n".join(lines) or "No custom fields yet."
    )


async def _fields_add(args: argparse.Namespace, services: Services) -> Any:
    field = await services.fields.add(SYSTEM, args.name, FieldKind(args.kind), args.choice)
    return _Output(_field_json(field), f"Added the {field.kind.value} field {field.name!r}.")


async def _fields_delete(args: argparse.Namespace, services: Services) -> Any:
    field = await services.fields.delete(SYSTEM, args.name)
    return _Output(
        _field_json(field), f"Deleted the field {field.name!r}; contacts keep their values."
    )


def _field_json(field: CustomFieldDef) -> dict[str, Any]:
    return {"name": field.name, "kind": field.kind.value, "choices": field.choices}


async def _apikeys_create(args: argparse.Namespace, services: Services) -> Any:
    key, secret = await services.api_keys.create(SYSTEM, args.name)
    text = (
        f"Created the key {key.name!r}. Keep it now; it is not shown again:\n{secret}\n"
        f"Use it as: Authorization: Bearer {secret}"
    )
    return _Output({**_key_json(key), "secret": secret}, text)


async def _apikeys_list(args: argparse.Namespace, services: Services) -> Any:
    keys = await services.api_keys.list(SYSTEM)
    lines = [
        f"  {key.name}  {key.prefix}…  created {key.created_at:%Y-%m-%d %H:%M}"
        + (f"  revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "")
        for key in keys
    ]
    return _Output([_key_json(key) for key in keys], "\n".join(lines) or "No API keys yet.")


async def _apikeys_revoke(args: argparse.Namespace, services: Services) -> Any:
    key = await services.api_keys.revoke(SYSTEM, args.name)
    return _Output(_key_json(key), f"Revoked the key {key.name!r}; it no longer works.")


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "name": key.name,
        "prefix": key.prefix,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


# The long-running commands import aiogram (seconds of start-up) only when they run, so that
# the quick commands stay quick.


async def _digest(args: argparse.Namespace, services: Services) -> Any:
    """Today's morning messages for everyone who has not had theirs, whatever their time: the
    same claims as the scheduler's, so neither sends what the other did."""
    from handlers.i18n import build_i18n

    i18n = build_i18n(services.settings.default_language)
    if args.dry_run:
        return await _digest_preview(services, i18n)
    from bot.notifier import Pacer, ScheduledMessages

    async with _telegram(services.settings) as bot:
        scheduled = ScheduledMessages(bot, services, i18n, Pacer(services.settings.notify_rate))
        sent = await scheduled.send_morning_messages(whatever_the_time=True)
    return _Output({"sent": sent}, f"Sent {sent} morning message{'s' * (sent != 1)}.")


async def _digest_preview(services: Services, i18n: Any) -> _Output:
    from bot.notifier import preview

    found = await preview(services, i18n)
    messages, blocks = [], []
    for due, message in found:
        buttons = [
            key.text
            for row in (message.keyboard.inline_keyboard if message.keyboard else [])
            for key in row
        ]
        text = _plain(message.text)
        messages.append(
            {
                "user_id": due.user_id,
                "telegram_id": due.user.telegram_id,
                "name": due.user.name,
                "kind": due.kind,
                "day": due.day.isoformat(),
                "text": text,
                "buttons": buttons,
                "chart": message.chart is not None,
            }
        )
        extras = [f"[{b}]" for b in buttons] + ["[funnel chart]"] * (message.chart is not None)
        head = f"To {due.user.name} ({due.user.role.value}, Telegram {due.user.telegram_id}):"
        blocks.append("\n".join([head, text, *extras]))
    summary = (
        f"Would send {len(found)} morning message{'s' * (len(found) != 1)}"
        " (dry run: nothing sent, nothing recorded)."
    )
    return _Output({"dry_run": True, "messages": messages}, "\n\n".join([summary, *blocks]))


def _plain(html_text: str) -> str:
    """Telegram's HTML as a terminal shows it."""
    return html.unescape(re.sub(r"<[^>]+>", "", html_text))


@contextlib.asynccontextmanager
async def _telegram(settings: Settings) -> AsyncIterator[Any]:
    """A bot on the configured Bot API, once it has answered; refused politely otherwise,
    before anything is claimed (a claimed message that cannot go out is lost for the day)."""
    from aiogram.exceptions import TelegramAPIError, TelegramNetworkError
    from aiogram.utils.token import TokenValidationError

    from bot.runtime import build_bot

    if settings.bot_token is None:
        raise Refused("BOT_TOKEN is not set (get one from @BotFather)")
    token = settings.bot_token.get_secret_value()
    base = settings.telegram_api_base
    try:
        probe = build_bot(settings, token, retrying=False)
    except TokenValidationError:
        raise Refused("BOT_TOKEN is not a bot token (digits, a colon, then letters)") from None
    try:
        await probe.get_me(request_timeout=10)
    except TelegramNetworkError as error:
        raise Refused(f"cannot reach the Telegram Bot API at {base}: {error.message}") from None
    except TelegramAPIError as error:
        raise Refused(f"the Telegram Bot API at {base} refused the bot: {error.message}") from None
    finally:
        await probe.session.close()
    bot = build_bot(settings, token)
    try:
        yield bot
    finally:
        await bot.session.close()


async def _run_polling(args: argparse.Namespace, services: Services) -> Any:
    from bot.entrypoints import serve_polling

    _log_to_console(services)
    await _refusing_startup(serve_polling(services))
    return _Output({"stopped": True}, "Stopped.")


async def _run_webhook(args: argparse.Namespace, services: Services) -> Any:
    from bot.entrypoints import serve_webhook

    _log_to_console(services)
    await _refusing_startup(serve_webhook(services))
    return _Output({"stopped": True}, "Stopped.")


async def _run_sandbox(args: argparse.Namespace, services: Services) -> Any:
    from bot.entrypoints import serve_sandbox

    _log_to_console(services)
    await _refusing_startup(serve_sandbox(services, host=args.host, port=args.port, demo=args.demo))
    return _Output({"stopped": True}, "Stopped.")


async def _refusing_startup(serving: Awaitable[None]) -> None:
    from bot.entrypoints import StartupRefused

    try:
        await serving
    except StartupRefused as error:
        raise Refused(str(error)) from None


def _reset_sandbox_database() -> None:
    """--demo starts from a fresh sandbox database (and emulated Telegram) each time."""
    from bot.entrypoints import SANDBOX_STATE_SUFFIX

    for suffix in ("", "-wal", "-shm", SANDBOX_STATE_SUFFIX):
        Path(SANDBOX_DATABASE + suffix).unlink(missing_ok=True)


def _log_to_console(services: Services) -> None:
    logging.basicConfig(
        level=services.settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # APScheduler tells of every run at INFO, two lines a second for the notice pickup; the
    # scheduler logs every failure itself (bot.scheduler).
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


class _Output:
    def __init__(self, data: Any, text: str, *, to_stderr: bool = False) -> None:
        self.data = data
        self.text = text
        self.to_stderr = to_stderr  # when stdout carries the command's product (export -)


def _print(args: argparse.Namespace, result: Any) -> None:
    if isinstance(result, dict) and "_text" in result:
        text = result.pop("_text")
        result = _Output(result, text)
    stream = sys.stderr if result.to_stderr else sys.stdout
    if args.json:
        print(json.dumps(result.data, ensure_ascii=False, indent=2, default=str), file=stream)
    else:
        print(result.text, file=stream)


def _refuse(args: argparse.Namespace, message: str, code: str, **extra: Any) -> int:
    line = " ".join(message.split())
    if getattr(args, "json", False):
        print(json.dumps({"error": code, "message": line, **extra}, ensure_ascii=False))
    print(f"stagekeeper: {line}", file=sys.stderr)
    return 1


def _stage_json(summary: StageSummary) -> dict[str, Any]:
    stage = summary.stage
    return {
        "id": stage.id,
        "name": stage.name,
        "category": stage.category.value,
        "position": stage.position,
        "contacts": summary.contacts,
    }


def _stage_lines(summaries: list[StageSummary]) -> list[str]:
    lines: list[str] = []
    for category in Category:
        group = [s for s in summaries if s.stage.category is category]
        if group:
            lines.append(f"{category.value}:")
            lines += [f"  {s.stage.position}. {s.stage.name}  ({s.contacts})" for s in group]
    return lines


def _contact_json(details: ContactDetails) -> dict[str, Any]:
    return ContactOut.of(details).model_dump()


def _contact_line(details: ContactDetails, *, with_id: bool = False) -> str:
    contact = details.contact
    parts = [contact.label()]
    parts += [p for p in (contact.phone, contact.email, details.company) if p and p != parts[0]]
    stage = (
        f"{details.stage.name} ({details.stage.category.value})" if details.stage else "no stage"
    )
    line = " · ".join(parts) + f" — {stage}"
    return f"#{contact.id} {line}" if with_id else line
