"""Rules of the stage list (DESIGN §1 "Stages"): names, order, categories, deletion."""

from __future__ import annotations

from collections.abc import Iterable

from domain.errors import (
    DuplicateStageName,
    InvalidInput,
    LastWonStage,
    StageNotEmpty,
    StageNotFound,
)
from domain.model import Category, Stage
from domain.text import clean_name, fold

STAGE_NAME_MAX = 64

TEMPLATES: dict[str, tuple[tuple[str, Category], ...]] = {
    "amis": (
        ("Lead", Category.OPEN),
        ("MQL", Category.OPEN),
        ("SQL", Category.OPEN),
        ("Customer", Category.WON),
        ("Loyal customer", Category.WON),
        ("Unsubscribed", Category.LOST),
        ("Disqualified", Category.LOST),
    ),
    "outbound": (
        ("Potential", Category.OPEN),
        ("Interested", Category.OPEN),
        ("Qualified", Category.OPEN),
        ("Customer", Category.WON),
        ("Not interested", Category.LOST),
        ("Bad fit", Category.LOST),
    ),
    "inbound": (
        ("Trial", Category.OPEN),
        ("Customer", Category.WON),
        ("Trial expired", Category.LOST),
        ("Cancelled", Category.LOST),
        ("Bad fit", Category.LOST),
    ),
    "none": (),
}


def stage_name(raw: str) -> str:
    name = clean_name(raw)
    if not name:
        raise InvalidInput("A stage needs a name.")
    if len(name) > STAGE_NAME_MAX:
        raise InvalidInput(f"A stage name has at most {STAGE_NAME_MAX} characters.")
    return name


def parse_category(raw: str) -> Category:
    try:
        return Category(raw.strip().lower())
    except ValueError:
        raise InvalidInput(f"{raw!r} is not a category; use open, won or lost.") from None


class Pipeline:
    """The live (not archived) stages, with the invariants that span them."""

    def __init__(self, stages: Iterable[Stage]) -> None:
        self.stages = sorted((s for s in stages if not s.archived), key=Stage.sort_key)

    def ordered(self) -> list[Stage]:
        return list(self.stages)

    def in_category(self, category: Category) -> list[Stage]:
        return [s for s in self.stages if s.category is category]

    def find(self, name: str) -> Stage:
        key = fold(name)
        for stage in self.stages:
            if fold(stage.name) == key:
                return stage
        raise StageNotFound(name.strip())

    def get(self, stage_id: int) -> Stage:
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise StageNotFound(f"#{stage_id}")

    def check_name_free(self, name: str, *, ignore: Stage | None = None) -> None:
        key = fold(name)
        for stage in self.stages:
            if stage is not ignore and fold(stage.name) == key:
                raise DuplicateStageName(name)

    def new_stage(self, raw_name: str, category: Category) -> Stage:
        name = stage_name(raw_name)
        self.check_name_free(name)
        return Stage(id=None, name=name, category=category, position=0)

    def placed(self, stage: Stage, position: int | None) -> list[Stage]:
        """`stage`'s category renumbered 1..n with `stage` at `position` (1-based, clamped;
        default last). Returns the stages whose position changed."""
        siblings = [s for s in self.in_category(stage.category) if s is not stage]
        if position is None:
            index = len(siblings)
        else:
            if position < 1:
                raise InvalidInput("Positions start at 1.")
            index = min(position, len(siblings) + 1) - 1
        siblings.insert(index, stage)
        changed = []
        for number, sibling in enumerate(siblings, start=1):
            if sibling.position != number or sibling is stage:
                sibling.position = number
                changed.append(sibling)
        return changed

    def check_recategorize(self, stage: Stage, category: Category) -> None:
        if stage.category is Category.WON and category is not Category.WON:
            self._check_not_last_won(stage, "recategorized away from won")

    def check_delete(
        self, stage: Stage, contacts: int, target: Stage | None, to_no_stage: bool
    ) -> None:
        if stage.category is Category.WON:
            self._check_not_last_won(stage, "deleted")
        if target is not None and target.id == stage.id:
            raise InvalidInput("A stage cannot be reassigned to itself.")
        if contacts and target is None and not to_no_stage:
            raise StageNotEmpty(
                f"{stage.name!r} holds {contacts} contact(s); choose a stage to move them to "
                "(--reassign-to) or move them to no stage (--no-stage)."
            )

    def _check_not_last_won(self, stage: Stage, verb: str) -> None:
        if len(self.in_category(Category.WON)) == 1:
            raise LastWonStage(
                f"{stage.name!r} is the last won stage and cannot be {verb}; "
                "make another stage won first."
            )
