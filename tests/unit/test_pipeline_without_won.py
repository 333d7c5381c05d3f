from __future__ import annotations

from domain.access import SYSTEM
from domain.model import Category
from domain.services.stages import StageService


async def test_a_pipeline_that_never_had_a_won_stage_can_delete_any_stage(
    stages: StageService,
) -> None:
    await stages.apply_template(SYSTEM, "none")
    await stages.add(SYSTEM, "New", Category.OPEN)
    await stages.add(SYSTEM, "Closed", Category.LOST)
    await stages.delete(SYSTEM, "Closed")
    await stages.delete(SYSTEM, "New")
    assert await stages.summaries() == []
