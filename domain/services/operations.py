"""Bulk operations — a stage deletion's reassignment, a bulk move, an import — listed and undone
exactly: stages and history as they were, unless someone changed a contact since, in which case
the caller is told which and the rest is reverted only on confirmation."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from domain.access import Scope
from domain.errors import DomainError, InvalidInput, NotFound, SelectionChanged
from domain.model import Operation, Role, Source, User, utcnow
from domain.ports import BulkMove, Clock, ContactFilter, UnitOfWork, UnitOfWorkFactory
from domain.services.views import view_selection
from domain.stages import Pipeline
from domain.text import words
from domain.transitions import Policy, plan_move

RECENT = 10
UTC_ZONE = ZoneInfo("UTC")


class UndoNeedsConfirmation(DomainError):
    code = "undo_conflicts"

    def __init__(self, changed: list[int], names: list[str]) -> None:
        shown = ", ".join(names[:5]) + ("…" if len(names) > 5 else "")
        super().__init__(
            f"{len(changed)} contact(s) changed since ({shown}); they stay as they are. "
            "Confirm to revert the others."
        )
        self.changed = changed
        self.names = names


@dataclass(frozen=True, slots=True)
class UndoResult:
    operation: Operation
    reverted: int
    kept: int  # contacts changed since, left as they are


@dataclass(frozen=True, slots=True)
class Selection:
    """The contacts a bulk move takes: those a search finds by name or company words, or
    those of a saved view."""

    query: str | None = None
    view_id: int | None = None


@dataclass(frozen=True, slots=True)
class BulkPlan:
    """What a bulk move would do, for the confirmation that states its effect."""

    target: str | None
    contacts: int
    by_stage: dict[str, int]


class OperationService:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        policy: Policy | None = None,
        clock: Clock = utcnow,
        *,
        zone: ZoneInfo = UTC_ZONE,
    ) -> None:
        self._uow = uow
        self._policy = policy or Policy()
        self._clock = clock
        self._zone = zone

    async def recent(self, actor: User, limit: int = RECENT) -> list[Operation]:
        """Admins see everyone's operations, others their own."""
        async with self._uow(read_only=True) as uow:
            mine = None if actor.role is Role.ADMIN else actor.id
            return await uow.operations.recent(limit, actor_id=mine)

    async def get(self, actor: User, operation_id: int) -> Operation:
        async with self._uow(read_only=True) as uow:
            operation = await uow.operations.get(operation_id)
        if operation is None or not _may_undo(actor, operation):
            raise NotFound(f"There is no operation #{operation_id} of yours.")
        return operation

    async def undo(
        self, actor: User, operation_id: int, *, confirm_changed: bool = False
    ) -> UndoResult:
        now = self._clock()
        async with self._uow() as uow:
            operation = await uow.operations.get(operation_id)
            if operation is None or not _may_undo(actor, operation):
                raise NotFound(f"There is no operation #{operation_id} of yours.")
            if operation.undone_at is not None:
                raise InvalidInput(f"Operation #{operation_id} was undone already.")
            changed = await uow.operations.changed_since(operation_id)
            if changed and not confirm_changed:
                names = []
                for contact_id in changed[:5]:
                    contact = await uow.contacts.get(contact_id)
                    names.append(contact.label() if contact else f"#{contact_id} (deleted)")
                raise UndoNeedsConfirmation(changed, names)
            if operation.stage_id is not None:
                await self._restore_stage(uow, operation.stage_id)
            reverted = await uow.operations.revert(operation_id, by_user_id=actor.id)
            operation.undone_at = now
            operation.undone_by_id = actor.id
            await uow.operations.update(operation)
            await uow.commit()
        return UndoResult(operation, reverted, len(changed))

    @staticmethod
    async def _restore_stage(uow: UnitOfWork, stage_id: int) -> None:
        """Undoing a deletion's reassignment brings the deleted stage back first."""
        stages = uow.stages
        stage = await stages.get(stage_id)
        if stage is None or not stage.archived:
            return
        pipeline = Pipeline(await stages.list())
        pipeline.check_name_free(stage.name)
        stage.archived_at = None
        # Back where it was in the funnel: a deletion keeps the stage's position.
        for placed in pipeline.placed(stage, stage.position):
            await stages.update(placed)

    async def plan_bulk_move(self, actor: User, selection: Selection) -> BulkPlan:
        """How many contacts a selection holds, by their current stage."""
        async with self._uow(read_only=True) as uow:
            where, _ = await self._selected(uow, actor, selection)
            counts = await uow.contacts.count_by_stage(where, Scope.of(actor))
            stages = {s.id: s.name for s in await uow.stages.list(include_archived=True)}
        by_stage: dict[str, int] = {}
        for stage_id, count in counts.items():
            name = stages.get(stage_id, "—") if stage_id else "—"
            by_stage[name] = by_stage.get(name, 0) + count
        return BulkPlan(None, sum(counts.values()), by_stage)

    async def bulk_move(
        self,
        actor: User,
        selection: Selection,
        stage_name: str,
        *,
        reason: str | None = None,
        confirmed: int | None = None,
    ) -> Operation:
        """Move every contact of a selection (in the actor's scope) to a stage, in one
        transaction, each move in history with source `bulk`; undoable. Set-based: one
        statement per starting stage, however many contacts. The rules apply to each starting
        stage; if any refuses, nothing moves. `confirmed`: the number of contacts the person
        agreed to; a selection that holds another number now is refused."""
        now = self._clock()
        scope = Scope.of(actor)
        async with self._uow(bulk=True) as uow:
            pipeline = Pipeline(await uow.stages.list())
            target = pipeline.find(stage_name)
            all_stages = {s.id: s for s in await uow.stages.list(include_archived=True)}
            where, label = await self._selected(uow, actor, selection)
            counts = await uow.contacts.count_by_stage(where, scope)
            if not counts:
                raise InvalidInput("No contact matches; nothing to move.")
            if confirmed is not None and sum(counts.values()) != confirmed:
                raise SelectionChanged(confirmed, sum(counts.values()))
            moves = []
            for stage_id in counts:
                current = all_stages.get(stage_id) if stage_id else None
                move = plan_move(
                    current,
                    target,
                    role=actor.role,
                    source=Source.BULK,
                    reason=reason,
                    policy=self._policy,
                )
                if move is not None:
                    moves.append((stage_id, move.reason))
            operation = await uow.operations.add(
                Operation(None, "bulk", actor.id, "", created_at=now)
            )
            for stage_id, move_reason in moves:
                operation.contacts += await uow.contacts.move_stage_contents(
                    BulkMove(
                        from_stage_id=stage_id,
                        to_stage_id=target.id,
                        at=now,
                        by_user_id=actor.id,
                        source=Source.BULK,
                        reason=move_reason,
                        operation_id=operation.id,
                        matching=where,
                        scope=scope,
                    )
                )
            operation.description = (
                f"Moved {operation.contacts} contact(s) of {label} to {target.name}"
            )
            await uow.operations.update(operation)
            await uow.commit()
        return operation

    async def _selected(
        self, uow: UnitOfWork, actor: User, selection: Selection
    ) -> tuple[ContactFilter, str]:
        """The filter of a selection, and how to name it in the operation's description."""
        if selection.view_id is not None:
            view, where = await view_selection(
                uow, actor, selection.view_id, self._zone, self._clock()
            )
            return where, f"view {view.name!r}"
        query = (selection.query or "").strip()
        found = tuple(words(query))[:8]
        if not found:
            raise InvalidInput("Say which contacts: a search such as a name, a company or a tag.")
        return ContactFilter(words=found), repr(query)


def _may_undo(actor: User, operation: Operation) -> bool:
    return actor.role is Role.ADMIN or (actor.id is not None and operation.actor_id == actor.id)
