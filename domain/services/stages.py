"""Use cases of stage administration. Each runs in one unit of work and commits there."""

from __future__ import annotations

from dataclasses import dataclass

from domain.access import require_role
from domain.errors import InvalidInput, StageNotFound
from domain.model import Category, Operation, Role, Source, Stage, User, utcnow
from domain.ports import BulkMove, Clock, UnitOfWork, UnitOfWorkFactory
from domain.stages import TEMPLATES, Pipeline, stage_name
from domain.transitions import Move, Policy, plan_move


@dataclass(frozen=True, slots=True)
class StageSummary:
    stage: Stage
    contacts: int


@dataclass(frozen=True, slots=True)
class DeleteResult:
    stage: Stage
    moved: int
    target: Stage | None
    operation_id: int | None


class StageService:
    def __init__(
        self, uow: UnitOfWorkFactory, policy: Policy | None = None, clock: Clock = utcnow
    ) -> None:
        self._uow = uow
        self._policy = policy or Policy()
        self._clock = clock

    async def summaries(self) -> list[StageSummary]:
        async with self._uow(read_only=True) as uow:
            pipeline = Pipeline(await uow.stages.list())
            counts = await uow.stages.contact_counts()
        return [StageSummary(s, counts.get(s.id, 0)) for s in pipeline.ordered()]

    async def ordered(self) -> list[Stage]:
        """The live stages in display order, without counting their contacts (cheap)."""
        async with self._uow(read_only=True) as uow:
            return Pipeline(await uow.stages.list()).ordered()

    async def contacts_without_stage(self) -> int:
        async with self._uow(read_only=True) as uow:
            return (await uow.stages.contact_counts()).get(None, 0)

    async def apply_template(self, actor: User, template: str) -> list[Stage]:
        """Create a template's stages in an empty pipeline; a pipeline with stages is left as is."""
        require_role(actor, Role.ADMIN)
        if template not in TEMPLATES:
            names = ", ".join(TEMPLATES)
            raise InvalidInput(f"Unknown template {template!r}; choose one of {names}.")
        async with self._uow() as uow:
            if await uow.stages.list():
                return []
            created = []
            positions: dict[Category, int] = {}
            for name, category in TEMPLATES[template]:
                positions[category] = positions.get(category, 0) + 1
                stage = Stage(None, name, category, positions[category])
                created.append(await uow.stages.add(stage))
            await uow.commit()
        return created

    async def add(
        self, actor: User, name: str, category: Category, position: int | None = None
    ) -> Stage:
        require_role(actor, Role.ADMIN)
        async with self._uow() as uow:
            pipeline = Pipeline(await uow.stages.list())
            stage = pipeline.new_stage(name, category)
            stage = await uow.stages.add(stage)
            await self._save_positions(uow, pipeline.placed(stage, position))
            await uow.commit()
        return stage

    async def rename(self, actor: User, name: str, new_name: str) -> Stage:
        require_role(actor, Role.ADMIN)
        async with self._uow() as uow:
            pipeline = Pipeline(await uow.stages.list())
            stage = pipeline.find(name)
            new_name = stage_name(new_name)
            pipeline.check_name_free(new_name, ignore=stage)
            stage.name = new_name
            await uow.stages.update(stage)
            await uow.commit()
        return stage

    async def set_idle_days(self, actor: User, name: str, days: int | None) -> Stage:
        """How long a lead may sit in this stage untouched before it counts as idle (in the
        morning reminders); None: the organisation's default."""
        require_role(actor, Role.ADMIN)
        if days is not None and not 1 <= days <= 365:
            raise InvalidInput("Give a number of days from 1 to 365.")
        async with self._uow() as uow:
            stage = Pipeline(await uow.stages.list()).find(name)
            stage.idle_days = days
            await uow.stages.update(stage)
            await uow.commit()
        return stage

    async def move(self, actor: User, name: str, position: int) -> Stage:
        require_role(actor, Role.ADMIN)
        async with self._uow() as uow:
            pipeline = Pipeline(await uow.stages.list())
            stage = pipeline.find(name)
            await self._save_positions(uow, pipeline.placed(stage, position))
            await uow.commit()
        return stage

    async def recategorize(self, actor: User, name: str, category: Category) -> Stage:
        """One atomic step; history keeps stage ids, so every report follows at once."""
        require_role(actor, Role.ADMIN)
        async with self._uow() as uow:
            pipeline = Pipeline(await uow.stages.list())
            stage = pipeline.find(name)
            if stage.category is category:
                return stage
            pipeline.check_recategorize(stage, category)
            old_siblings = [s for s in pipeline.in_category(stage.category) if s is not stage]
            stage.category = category
            await self._save_positions(uow, pipeline.placed(stage, None))
            await self._save_positions(uow, _renumbered(old_siblings))
            await uow.commit()
        return stage

    async def delete(
        self,
        actor: User,
        name: str,
        *,
        reassign_to: str | None = None,
        no_stage: bool = False,
        reason: str | None = None,
    ) -> DeleteResult:
        """Archive a stage, first moving its contacts (each move in history, source reassign)."""
        now = self._clock()
        async with self._uow(bulk=True) as uow:
            pipeline, stage, target, count, move = await self._checked_delete(
                uow, actor, name, reassign_to, no_stage, reason
            )
            operation_id = None
            moved = 0
            if count:
                assert move is not None  # a stage is never reassigned to itself
                where = target.name if target else "no stage"
                operation = await uow.operations.add(
                    Operation(
                        None,
                        "reassign",
                        actor.id,
                        f"Deleted stage {stage.name!r}: {count} contact(s) moved to {where}",
                        created_at=now,
                        stage_id=stage.id,
                        contacts=count,
                    )
                )
                operation_id = operation.id
                moved = await uow.contacts.move_stage_contents(
                    BulkMove(
                        from_stage_id=_id(stage),
                        to_stage_id=target.id if target else None,
                        at=now,
                        by_user_id=actor.id,
                        source=Source.REASSIGN,
                        reason=move.reason,
                        operation_id=operation_id,
                    )
                )
            stage.archived_at = now
            await uow.stages.update(stage)
            await self._save_positions(
                uow,
                _renumbered([s for s in pipeline.in_category(stage.category) if s is not stage]),
            )
            await uow.commit()
        return DeleteResult(stage, moved, target, operation_id)

    async def plan_delete(
        self,
        actor: User,
        name: str,
        *,
        reassign_to: str | None = None,
        no_stage: bool = False,
        reason: str | None = None,
    ) -> int:
        """How many contacts deleting the stage would move, refusing as `delete` would: lets a
        caller say what is about to happen before a deletion that may take a while."""
        async with self._uow(read_only=True) as uow:
            *_, count, _move = await self._checked_delete(
                uow, actor, name, reassign_to, no_stage, reason
            )
        return count

    async def _checked_delete(
        self,
        uow: UnitOfWork,
        actor: User,
        name: str,
        reassign_to: str | None,
        no_stage: bool,
        reason: str | None,
    ) -> tuple[Pipeline, Stage, Stage | None, int, Move | None]:
        """The stage to delete, its target, how many contacts it holds and the move they make
        (None when it holds none), once every rule agreed."""
        require_role(actor, Role.ADMIN)
        if reassign_to is not None and no_stage:
            raise InvalidInput(
                "Choose either a stage to move the contacts to or no stage, not both."
            )
        pipeline = Pipeline(await uow.stages.list())
        stage = pipeline.find(name)
        target = pipeline.find(reassign_to) if reassign_to is not None else None
        count = await uow.contacts.count_in_stage(_id(stage))
        pipeline.check_delete(stage, count, target, no_stage)
        move = None
        if count:
            move = plan_move(
                stage,
                target,
                role=actor.role,
                source=Source.REASSIGN,
                reason=reason,
                policy=self._policy,
            )
        return pipeline, stage, target, count, move

    async def get(self, stage_id: int) -> Stage:
        async with self._uow(read_only=True) as uow:
            stage = await uow.stages.get(stage_id)
        if stage is None:
            raise StageNotFound(f"#{stage_id}")
        return stage

    @staticmethod
    async def _save_positions(uow: UnitOfWork, stages: list[Stage]) -> None:
        for stage in stages:
            await uow.stages.update(stage)


def _renumbered(stages: list[Stage]) -> list[Stage]:
    changed = []
    for number, stage in enumerate(stages, start=1):
        if stage.position != number:
            stage.position = number
            changed.append(stage)
    return changed


def _id(stage: Stage) -> int:
    assert stage.id is not None, "stored stages have ids"
    return stage.id
