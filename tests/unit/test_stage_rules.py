"""Stage administration (DESIGN §1 "Stages"), specified on in-memory fakes."""

from __future__ import annotations

import pytest

from domain.access import SYSTEM
from domain.errors import (
    AccessDenied,
    DuplicateStageName,
    InvalidInput,
    LastWonStage,
    LostReasonRequired,
    StageNotEmpty,
    StageNotFound,
)
from domain.model import Category, Source
from domain.services.contacts import ContactDraft, ContactService
from domain.services.stages import StageService
from tests.unit.conftest import People
from tests.unit.fakes import FakeDatabase

pytestmark = pytest.mark.usefixtures("amis")


async def names(stages: StageService) -> list[tuple[str, str, int]]:
    return [(s.stage.name, s.stage.category.value, s.contacts) for s in await stages.summaries()]


async def add_contacts(contacts: ContactService, stage: str, count: int) -> list[int]:
    ids = []
    for n in range(count):
        contact = await contacts.add(SYSTEM, ContactDraft(name=f"{stage} {n}", stage=stage))
        assert contact.id is not None
        ids.append(contact.id)
    return ids


async def test_the_amis_template_creates_seven_stages_open_then_won_then_lost(
    stages: StageService,
) -> None:
    assert await names(stages) == [
        ("Lead", "open", 0),
        ("MQL", "open", 0),
        ("SQL", "open", 0),
        ("Customer", "won", 0),
        ("Loyal customer", "won", 0),
        ("Unsubscribed", "lost", 0),
        ("Disqualified", "lost", 0),
    ]


async def test_a_template_is_not_applied_over_existing_stages(stages: StageService) -> None:
    assert await stages.apply_template(SYSTEM, "outbound") == []
    assert len(await names(stages)) == 7


async def test_an_unknown_template_is_refused(stages: StageService) -> None:
    with pytest.raises(InvalidInput, match="amis, outbound, inbound, none"):
        await stages.apply_template(SYSTEM, "crm")


async def test_stage_names_are_unique_ignoring_case_and_diacritics(stages: StageService) -> None:
    await stages.add(SYSTEM, "Khách hàng", Category.OPEN)
    with pytest.raises(DuplicateStageName):
        await stages.add(SYSTEM, "  KHACH HANG ", Category.LOST)
    with pytest.raises(DuplicateStageName):
        await stages.rename(SYSTEM, "Lead", "khách  Hàng")


async def test_a_stage_name_is_trimmed_and_has_one_to_64_characters(stages: StageService) -> None:
    stage = await stages.add(SYSTEM, "  Demo   booked ", Category.OPEN)
    assert stage.name == "Demo booked"
    with pytest.raises(InvalidInput):
        await stages.add(SYSTEM, "   ", Category.OPEN)
    with pytest.raises(InvalidInput, match="64"):
        await stages.add(SYSTEM, "x" * 65, Category.OPEN)
    await stages.add(SYSTEM, "y" * 64, Category.OPEN)


async def test_a_stage_is_added_at_the_chosen_place_in_its_category(stages: StageService) -> None:
    await stages.add(SYSTEM, "Demo", Category.OPEN, position=2)
    await stages.add(SYSTEM, "Churned", Category.LOST)
    assert [n for n, c, _ in await names(stages) if c == "open"] == ["Lead", "Demo", "MQL", "SQL"]
    assert [n for n, c, _ in await names(stages) if c == "lost"][-1] == "Churned"


async def test_moving_a_stage_renumbers_its_category(stages: StageService) -> None:
    await stages.move(SYSTEM, "SQL", 1)
    summaries = [s.stage for s in await stages.summaries() if s.stage.category is Category.OPEN]
    assert [(s.name, s.position) for s in summaries] == [("SQL", 1), ("Lead", 2), ("MQL", 3)]
    with pytest.raises(InvalidInput):
        await stages.move(SYSTEM, "SQL", 0)


async def test_renaming_keeps_contacts_and_history_on_the_stage(
    stages: StageService, contacts: ContactService
) -> None:
    [contact_id] = await add_contacts(contacts, "MQL", 1)
    await stages.rename(SYSTEM, "MQL", "Marketing qualified")
    card = await contacts.get(SYSTEM, contact_id)
    assert card.stage is not None
    assert card.stage.name == "Marketing qualified"
    timeline = await contacts.timeline(SYSTEM, contact_id, ["stage"])
    assert timeline[0].text == "— → Marketing qualified"


async def test_recategorizing_is_one_step_and_history_keeps_stage_ids(
    stages: StageService, contacts: ContactService
) -> None:
    [contact_id] = await add_contacts(contacts, "Customer", 1)
    stage = await stages.recategorize(SYSTEM, "Unsubscribed", Category.WON)
    assert stage.category is Category.WON
    await stages.recategorize(SYSTEM, "Customer", Category.LOST)
    [change] = await contacts.history(SYSTEM, contact_id)
    assert change.to_stage_id == (await contacts.stage_by_name("Customer")).id
    assert ("Customer", "lost", 1) in await names(stages)


async def test_a_recategorized_stage_goes_last_in_its_new_category(stages: StageService) -> None:
    await stages.recategorize(SYSTEM, "Lead", Category.LOST)
    assert [(n, c) for n, c, _ in await names(stages)][-1] == ("Lead", "lost")
    open_stages = [s.stage for s in await stages.summaries() if s.stage.category is Category.OPEN]
    assert [s.position for s in open_stages] == [1, 2]


async def test_the_last_won_stage_can_be_neither_recategorized_away_nor_deleted(
    stages: StageService,
) -> None:
    await stages.delete(SYSTEM, "Loyal customer")
    with pytest.raises(LastWonStage, match="make another stage won first"):
        await stages.recategorize(SYSTEM, "Customer", Category.LOST)
    with pytest.raises(LastWonStage, match="make another stage won first"):
        await stages.delete(SYSTEM, "Customer")
    await stages.recategorize(SYSTEM, "SQL", Category.WON)
    await stages.delete(SYSTEM, "Customer")
    assert [n for n, c, _ in await names(stages) if c == "won"] == ["SQL"]


async def test_once_a_won_stage_exists_one_always_remains(stages: StageService) -> None:
    await stages.recategorize(SYSTEM, "Customer", Category.OPEN)
    with pytest.raises(LastWonStage):
        await stages.recategorize(SYSTEM, "Loyal customer", Category.OPEN)


async def test_deleting_a_stage_that_holds_contacts_needs_a_target_and_changes_nothing(
    stages: StageService, contacts: ContactService, db: FakeDatabase
) -> None:
    await add_contacts(contacts, "MQL", 3)
    before = db.commits
    with pytest.raises(StageNotEmpty, match="3 contact"):
        await stages.delete(SYSTEM, "MQL")
    assert db.commits == before
    assert ("MQL", "open", 3) in await names(stages)


async def test_deleting_with_reassignment_moves_every_contact_and_records_each_move(
    stages: StageService, contacts: ContactService
) -> None:
    ids = await add_contacts(contacts, "MQL", 3)
    result = await stages.delete(SYSTEM, "MQL", reassign_to="sql")
    assert result.moved == 3
    assert result.operation_id is not None
    assert ("SQL", "open", 3) in await names(stages)
    assert "MQL" not in [n for n, _, _ in await names(stages)]
    for contact_id in ids:
        last = (await contacts.history(SYSTEM, contact_id))[-1]
        assert last.source is Source.REASSIGN
        assert last.operation_id == result.operation_id
        assert (await contacts.get(SYSTEM, contact_id)).stage.name == "SQL"  # type: ignore[union-attr]


async def test_deleting_to_no_stage_leaves_contacts_without_stage(
    stages: StageService, contacts: ContactService
) -> None:
    [contact_id] = await add_contacts(contacts, "Lead", 1)
    result = await stages.delete(SYSTEM, "Lead", no_stage=True)
    assert result.moved == 1
    assert (await contacts.get(SYSTEM, contact_id)).stage is None
    assert await stages.contacts_without_stage() == 1


async def test_reassigning_into_a_lost_stage_takes_one_reason_for_the_operation(
    stages: StageService, contacts: ContactService
) -> None:
    ids = await add_contacts(contacts, "Lead", 2)
    with pytest.raises(LostReasonRequired):
        await stages.delete(SYSTEM, "Lead", reassign_to="Disqualified")
    await stages.delete(SYSTEM, "Lead", reassign_to="Disqualified", reason="Not a fit")
    for contact_id in ids:
        assert (await contacts.history(SYSTEM, contact_id))[-1].reason == "Not a fit"


async def test_a_deleted_stage_is_archived_and_history_still_names_it(
    stages: StageService, contacts: ContactService
) -> None:
    [contact_id] = await add_contacts(contacts, "MQL", 1)
    await stages.delete(SYSTEM, "MQL", reassign_to="SQL")
    timeline = await contacts.timeline(SYSTEM, contact_id, ["stage"])
    assert [entry.text for entry in timeline] == ["MQL → SQL", "— → MQL"]
    with pytest.raises(StageNotFound):
        await stages.rename(SYSTEM, "MQL", "Back")
    await stages.add(SYSTEM, "MQL", Category.OPEN)  # the name is free again


async def test_a_stage_cannot_be_reassigned_to_itself(stages: StageService) -> None:
    with pytest.raises(InvalidInput):
        await stages.delete(SYSTEM, "Lead", reassign_to="lead")


async def test_only_admins_administer_stages(stages: StageService, people: People) -> None:
    for user in (people.manager, people.agent):
        with pytest.raises(AccessDenied):
            await stages.add(user, "Demo", Category.OPEN)
        with pytest.raises(AccessDenied):
            await stages.recategorize(user, "Lead", Category.LOST)
        with pytest.raises(AccessDenied):
            await stages.delete(user, "Lead")
    await stages.add(people.admin, "Demo", Category.OPEN)
