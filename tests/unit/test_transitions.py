"""The transition rules (DESIGN §1 "Transitions"), on every path, specified on fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.access import SYSTEM
from domain.errors import (
    AccessDenied,
    AutomationDeclined,
    BackwardMoveNotAllowed,
    InvalidInput,
    LostReasonRequired,
    ReasonRequired,
    ReopenNotAllowed,
    StaleVersion,
)
from domain.model import Category, Source, User
from domain.services.contacts import ContactDraft, ContactService
from domain.services.stages import StageService
from domain.transitions import Policy
from tests.unit.conftest import Clock, People
from tests.unit.fakes import FakeDatabase

pytestmark = pytest.mark.usefixtures("amis")


async def lead(contacts: ContactService, owner: User, stage: str = "Lead") -> int:
    contact = await contacts.add(owner, ContactDraft(name="Trần Thị Bích", stage=stage))
    assert contact.id is not None
    return contact.id


async def move(
    contacts: ContactService, actor: User, contact_id: int, stage: str, **kwargs: object
) -> bool:
    target = await contacts.stage_by_name(stage)
    result = await contacts.set_stage(actor, contact_id, target.id, **kwargs)  # type: ignore[arg-type]
    return result.changed


async def stage_of(contacts: ContactService, contact_id: int) -> str | None:
    card = await contacts.get(SYSTEM, contact_id)
    return card.stage.name if card.stage else None


async def test_moving_to_the_current_stage_is_a_no_op_without_history(
    contacts: ContactService, people: People
) -> None:
    contact_id = await lead(contacts, people.agent)
    assert not await move(contacts, people.agent, contact_id, "Lead")
    assert len(await contacts.history(SYSTEM, contact_id)) == 1
    assert (await contacts.get(SYSTEM, contact_id)).contact.version == 1


async def test_skipping_stages_is_allowed_and_recorded(
    contacts: ContactService, people: People
) -> None:
    contact_id = await lead(contacts, people.agent)
    assert await move(contacts, people.agent, contact_id, "Customer")
    history = await contacts.history(SYSTEM, contact_id)
    assert [(h.source, h.by_user_id) for h in history][-1] == (Source.MANUAL, people.agent.id)
    assert await stage_of(contacts, contact_id) == "Customer"


async def test_a_lost_stage_needs_a_reason_and_a_refusal_changes_nothing(
    contacts: ContactService, people: People, db: FakeDatabase
) -> None:
    contact_id = await lead(contacts, people.agent)
    commits = db.commits
    with pytest.raises(LostReasonRequired):
        await move(contacts, people.agent, contact_id, "Disqualified")
    with pytest.raises(LostReasonRequired, match="Describe"):
        await move(contacts, people.agent, contact_id, "Disqualified", reason=" other ")
    assert db.commits == commits
    assert await stage_of(contacts, contact_id) == "Lead"
    assert await move(contacts, people.agent, contact_id, "Disqualified", reason="price")
    assert (await contacts.history(SYSTEM, contact_id))[-1].reason == "Price"


async def test_a_described_reason_counts_as_other(contacts: ContactService, people: People) -> None:
    contact_id = await lead(contacts, people.agent)
    await move(contacts, people.agent, contact_id, "Unsubscribed", reason="Moved abroad")
    assert (await contacts.history(SYSTEM, contact_id))[-1].reason == "Moved abroad"


async def test_a_contact_created_in_a_lost_stage_needs_a_reason_too(
    contacts: ContactService, people: People
) -> None:
    with pytest.raises(LostReasonRequired):
        await contacts.add(people.agent, ContactDraft(name="Lost one", stage="Disqualified"))
    contact = await contacts.add(
        people.agent, ContactDraft(name="Lost one", stage="Disqualified", lost_reason="No budget")
    )
    assert contact.stage_id is not None


async def test_only_managers_and_admins_reopen_and_they_give_a_reason(
    contacts: ContactService, people: People
) -> None:
    contact_id = await lead(contacts, people.agent, stage="Customer")
    with pytest.raises(ReopenNotAllowed):
        await move(contacts, people.agent, contact_id, "SQL", reason="wrong click")
    with pytest.raises(ReasonRequired):
        await move(contacts, people.manager, contact_id, "SQL")
    assert await move(contacts, people.manager, contact_id, "SQL", reason="Payment bounced")
    assert (await contacts.history(SYSTEM, contact_id))[-1].reason == "Payment bounced"


async def test_changing_a_won_outcome_to_lost_is_a_reopen_with_a_lost_reason(
    contacts: ContactService, people: People
) -> None:
    contact_id = await lead(contacts, people.agent, stage="Customer")
    with pytest.raises(ReopenNotAllowed):
        await move(contacts, people.agent, contact_id, "Disqualified", reason="Price")
    assert await move(contacts, people.admin, contact_id, "Disqualified", reason="Competitor")


async def test_moving_within_won_is_not_a_reopen(contacts: ContactService, people: People) -> None:
    contact_id = await lead(contacts, people.agent, stage="Customer")
    assert await move(contacts, people.agent, contact_id, "Loyal customer")


async def test_forward_only_stops_agents_going_back_but_not_managers(
    db: FakeDatabase, clock: Clock, people: People
) -> None:
    strict = ContactService(db.uow, policy=Policy(forward_only=True), clock=clock)
    contact_id = await lead(strict, people.agent, stage="SQL")
    with pytest.raises(BackwardMoveNotAllowed, match="forward"):
        await move(strict, people.agent, contact_id, "Lead")
    assert await move(strict, people.manager, contact_id, "MQL")


async def test_without_forward_only_agents_may_go_back(
    contacts: ContactService, people: People
) -> None:
    contact_id = await lead(contacts, people.agent, stage="SQL")
    assert await move(contacts, people.agent, contact_id, "Lead")


async def test_automation_only_moves_forward_and_never_out_of_won_or_lost(
    contacts: ContactService, people: People
) -> None:
    contact_id = await lead(contacts, people.agent, stage="SQL")
    with pytest.raises(AutomationDeclined, match="forward"):
        await move(contacts, SYSTEM, contact_id, "Lead", source=Source.AUTOMATION)
    assert await move(contacts, SYSTEM, contact_id, "Customer", source=Source.AUTOMATION)
    assert await move(contacts, SYSTEM, contact_id, "Loyal customer", source=Source.AUTOMATION)
    with pytest.raises(AutomationDeclined, match="won"):
        await move(
            contacts,
            SYSTEM,
            contact_id,
            "Unsubscribed",
            source=Source.AUTOMATION,
            reason="Unsubscribed",
        )
    with pytest.raises(AutomationDeclined):
        await move(contacts, SYSTEM, contact_id, "Customer", source=Source.AUTOMATION)
    assert await stage_of(contacts, contact_id) == "Loyal customer"


async def test_a_change_based_on_a_stale_version_is_refused_naming_who_changed_it(
    contacts: ContactService, people: People
) -> None:
    contact_id = await lead(contacts, people.agent)
    seen = (await contacts.get(people.agent, contact_id)).contact.version
    await move(contacts, people.manager, contact_id, "MQL")
    with pytest.raises(StaleVersion, match="Minh Manager"):
        await move(contacts, people.agent, contact_id, "SQL", expected_version=seen)
    assert await stage_of(contacts, contact_id) == "MQL"
    fresh = (await contacts.get(people.agent, contact_id)).contact.version
    assert await move(contacts, people.agent, contact_id, "SQL", expected_version=fresh)


async def test_a_backdated_change_keeps_its_past_time_but_not_a_future_or_out_of_order_one(
    contacts: ContactService, people: People, clock: Clock
) -> None:
    contact_id = await lead(contacts, people.agent)
    with pytest.raises(InvalidInput, match="future"):
        await move(contacts, SYSTEM, contact_id, "MQL", at=clock.now + timedelta(days=1))
    with pytest.raises(InvalidInput, match="before"):
        await move(contacts, SYSTEM, contact_id, "MQL", at=clock.now - timedelta(days=1))
    clock.advance(days=10)
    past = clock.now - timedelta(days=3)
    await move(contacts, SYSTEM, contact_id, "MQL", at=past, source=Source.IMPORT)
    card = await contacts.get(SYSTEM, contact_id)
    assert card.contact.stage_entered_at == past
    assert (await contacts.history(SYSTEM, contact_id))[-1].at == past


async def test_an_archived_stage_is_no_target(
    contacts: ContactService, stages: StageService, people: People
) -> None:
    contact_id = await lead(contacts, people.agent)
    mql = await contacts.stage_by_name("MQL")
    await stages.delete(SYSTEM, "MQL")
    with pytest.raises(InvalidInput, match="deleted"):
        await contacts.set_stage(people.agent, contact_id, mql.id)


async def test_undo_restores_the_previous_stage_without_the_reopen_rules(
    contacts: ContactService, people: People
) -> None:
    contact_id = await lead(contacts, people.agent)
    await move(contacts, people.agent, contact_id, "Disqualified", reason="Price")
    assert await move(contacts, people.agent, contact_id, "Lead", source=Source.UNDO)
    assert (await contacts.history(SYSTEM, contact_id))[-1].source is Source.UNDO


async def test_an_agent_cannot_move_another_agents_lead(
    contacts: ContactService, people: People
) -> None:
    contact_id = await lead(contacts, people.outsider)
    with pytest.raises(AccessDenied):
        await move(contacts, people.agent, contact_id, "MQL")
    assert await stage_of(contacts, contact_id) == "Lead"


async def test_a_manager_moves_the_team_leads_only(
    contacts: ContactService, people: People
) -> None:
    team_lead = await lead(contacts, people.teammate)
    other_lead = await lead(contacts, people.outsider)
    assert await move(contacts, people.manager, team_lead, "MQL")
    with pytest.raises(AccessDenied):
        await move(contacts, people.manager, other_lead, "MQL")


def test_categories_know_which_are_closed() -> None:
    assert [c for c in Category if c.closed] == [Category.WON, Category.LOST]


async def test_the_other_reason_needs_a_description_in_vietnamese_too(
    db: FakeDatabase, clock: Clock, people: People
) -> None:
    local = ContactService(db.uow, policy=Policy(lost_reasons=("Giá", "Khác")), clock=clock)
    contact_id = await lead(local, people.agent)
    with pytest.raises(LostReasonRequired, match="Describe"):
        await move(local, people.agent, contact_id, "Disqualified", reason="khác")
    assert await move(local, people.agent, contact_id, "Disqualified", reason="gia")
    assert (await local.history(SYSTEM, contact_id))[-1].reason == "Giá"
