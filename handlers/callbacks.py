"""Callback data of every inline button: ids and versions only, never names, so that each fits
Telegram's 64 bytes and a handler re-reads (and re-checks) what it names."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class CardCb(CallbackData, prefix="card"):
    """Open a contact's card; `kind` filters its timeline (all, note, call, stage, task)."""

    id: int
    kind: str = ""


class StagesCb(CallbackData, prefix="stg"):
    """Show the stage keyboard of a contact read at version `v`."""

    id: int
    v: int


class MoveCb(CallbackData, prefix="mv"):
    """Move a contact (read at version `v`) to a stage."""

    id: int
    stage: int
    v: int


class LostCb(CallbackData, prefix="lost"):
    """Move to a lost stage with the configured reason number `r` (-1: "Other", asks)."""

    id: int
    stage: int
    v: int
    r: int


class UndoCb(CallbackData, prefix="undo"):
    """Undo the stage change that left a contact at version `v` (the service decides what
    that change was, and whether it may still be undone)."""

    id: int
    v: int


class LogCb(CallbackData, prefix="log"):
    """Log a note, a call or a task on a contact: asks for the text."""

    id: int
    kind: str


class OwnerCb(CallbackData, prefix="own"):
    """Reassign a contact (read at version `v`); owner 0 lists the candidates."""

    id: int
    v: int
    owner: int = 0


class CompanyCb(CallbackData, prefix="co"):
    id: int


class PageCb(CallbackData, prefix="pg"):
    """A page of the last search or list the person asked for."""

    list: str
    page: int


class AccessCb(CallbackData, prefix="acc"):
    """An admin's decision on access request `req`: role agent/manager (then the team, by a
    short hash of its name, "-" for none), or reject."""

    req: int
    act: str
    team: str = ""


class LangCb(CallbackData, prefix="lang"):
    code: str


class CancelCb(CallbackData, prefix="x"):
    """Abandon what is being asked in `flow` (a StatesGroup's name) about contact `id` (0:
    none); back to the contact's card when there is one. A flow that ended or gave way to
    another is left alone."""

    flow: str
    id: int = 0


class NewCb(CallbackData, prefix="new"):
    """A choice while adding a contact: `step` (source, stage, owner) and the chosen value
    (a number into the offered list, a stage id or an owner id; 0 skips)."""

    step: str
    value: int


class PersonCb(CallbackData, prefix="usr"):
    """An admin's action on a person: view, agent, manager, team (then `team` is a short hash
    of the team's name, "-" for none), off, on."""

    id: int
    act: str
    team: str = ""


class StageAdminCb(CallbackData, prefix="sa"):
    """An admin's action on stage `id`: view, up, down, cat (to `arg`: open/won/lost), rename,
    delete (then `arg` is the target stage id, "none" for no stage), confirm-delete
    (`arg` target, `r` a lost reason number), add, list."""

    id: int = 0
    act: str
    arg: str = ""
    r: int = -1


class UndoOpCb(CallbackData, prefix="uo"):
    """Undo bulk operation `id`; `force` also when some contacts changed since."""

    id: int
    force: int = 0


class BulkCb(CallbackData, prefix="bulk"):
    """Move the contacts of the pending selection `sel` (kept in the person's conversation
    state) to stage `stage` (`go` 1 to confirm, `r` a lost reason number)."""

    sel: str
    stage: int
    go: int = 0
    r: int = -1


class ImportCb(CallbackData, prefix="imp"):
    """Apply the import whose dry run was shown (`create` 1: create missing stages and owners),
    or `go` 0 to drop it."""

    go: int
    create: int = 0


class ViewCb(CallbackData, prefix="view"):
    """Open saved view `id` at `page`, or delete it (`act` "del")."""

    id: int
    page: int = 0
    act: str = ""


class TagsCb(CallbackData, prefix="tag"):
    """Edit the tags of a contact read at version `v`: asks for them."""

    id: int
    v: int


class FieldCb(CallbackData, prefix="fld"):
    """Edit a custom field of a contact read at version `v`: `f` 0 lists the fields, else the
    field's id; then `c` the chosen choice's number (-1 asks for a value, -2 clears it)."""

    id: int
    v: int
    f: int = 0
    c: int = -1


class FieldAdminCb(CallbackData, prefix="fa"):
    """An admin's action on custom field `id`: view, delete, confirm-delete."""

    id: int
    act: str


class ImportMapCb(CallbackData, prefix="imap"):
    """Map column number `col` of the pending import (its unmapped columns, in order) to field
    `to`: an import field, `custom` (a custom field named like the column), `f<id>` (a defined
    custom field) or `ignore`."""

    col: int
    to: str


class DigestCb(CallbackData, prefix="dg"):
    """A /digest setting: onoff, times/time (`arg` HH:MM), zones/zone (`arg` the zone), ask
    (`arg` time or zone: typed), sec (`arg` a section to switch)."""

    act: str
    arg: str = ""


class RuleCb(CallbackData, prefix="rule"):
    """An admin's change to the automation rule of trigger number `t` (its place in
    domain.automation.TRIGGERS): `stage` -1 offers the choices, 0 makes it change no stage, -2
    restores the default, -3 goes back to the table; else the stage id."""

    t: int
    stage: int = -1


class ApiKeyCb(CallbackData, prefix="key"):
    """An admin's action on API key `id`: del (asks), yes (revokes), list."""

    id: int
    act: str


class ReportCb(CallbackData, prefix="rp"):
    """Show report `r` (snap, fun, src, conv, lead, time) for period `p`: a
    domain.reports.Span value, "c" for the local days `a` to `b` (as YYYYMMDD), or "ask" to ask
    for the dates."""

    r: str
    p: str
    a: int = 0
    b: int = 0
