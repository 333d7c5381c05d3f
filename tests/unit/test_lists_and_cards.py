"""What an agent's lists and cards show (ISSUE 4's services), specified on fakes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.access import SYSTEM
from domain.errors import AccessDenied, InvalidInput, StaleVersion
from domain.model import ActivityKind
from domain.services.contacts import ContactDraft, ContactService
from tests.unit.conftest import Clock, People

pytestmark = pytest.mark.usefixtures("amis")


async def add(contacts: ContactService, owner: object, name: str, **draft: object) -> int:
    contact = await contacts.add(owner, ContactDraft(name=name, **draft))  # type: ignore[arg-type]
    assert contact.id is not None
    return contact.id


async def test_my_open_leads_are_mine_in_open_stages_in_stage_order(
    contacts: ContactService, people: People
) -> None:
    await add(contacts, people.agent, "Late", stage="SQL")
    await add(contacts, people.agent, "Early", stage="Lead")
    await add(contacts, people.agent, "Won", stage="Customer")
    await add(contacts, people.teammate, "Not mine", stage="Lead")
    leads = await contacts.open_leads(people.agent)
    assert [(d.contact.name, d.stage.name if d.stage else None) for d in leads] == [
        ("Early", "Lead"),
        ("Late", "SQL"),
    ]


async def test_idle_leads_are_untouched_for_n_days_and_a_stage_change_is_a_touch(
    contacts: ContactService, people: People, clock: Clock
) -> None:
    quiet = await add(contacts, people.agent, "Quiet", stage="Lead")
    moved = await add(contacts, people.agent, "Moved", stage="Lead")
    called = await add(contacts, people.agent, "Called", stage="Lead")
    await add(contacts, people.agent, "Closed", stage="Customer")
    clock.advance(days=10)
    await contacts.set_stage(people.agent, moved, (await contacts.stage_by_name("MQL")).id)
    await contacts.log_activity(people.agent, called, ActivityKind.CALL, "No answer")
    clock.advance(days=1)
    idle = await contacts.idle_leads(people.agent, 7)
    assert [d.contact.id for d in idle] == [quiet]
    assert await contacts.idle_leads(people.agent, 30) == []
    with pytest.raises(InvalidInput):
        await contacts.idle_leads(people.agent, 0)


async def test_the_card_shows_open_tasks_soonest_first_and_the_latest_entries(
    contacts: ContactService, people: People, clock: Clock
) -> None:
    contact_id = await add(contacts, people.agent, "Chi", stage="Lead")
    for days, text in ((5, "Send contract"), (1, "Call back")):
        clock.advance(minutes=1)
        await contacts.log_activity(
            people.agent,
            contact_id,
            ActivityKind.TASK,
            text,
            due_at=clock.now + timedelta(days=days),
        )
    card = await contacts.card(people.agent, contact_id, latest=2)
    assert [t.text for t in card.open_tasks] == ["Call back", "Send contract"]
    assert [e.text for e in card.latest] == ["Call back", "Send contract"]
    assert card.timeline_size == 3


async def test_a_company_card_lists_the_contacts_the_caller_may_see(
    contacts: ContactService, people: People
) -> None:
    mine = await add(contacts, people.agent, "Mine", company="Đại Phát", stage="Lead")
    await add(contacts, people.outsider, "Theirs", company="dai phat")
    card = await contacts.get(people.agent, mine)
    assert card.contact.company_id is not None
    company = await contacts.company(people.agent, card.contact.company_id)
    assert company.company.name == "Đại Phát"
    assert [d.contact.name for d in company.contacts] == ["Mine"]
    admin_view = await contacts.company(people.admin, card.contact.company_id)
    assert len(admin_view.contacts) == 2


async def test_managers_reassign_within_their_team_and_agents_not_at_all(
    contacts: ContactService, people: People
) -> None:
    contact_id = await add(contacts, people.agent, "Lead")
    assert people.teammate.id is not None
    assert people.outsider.id is not None
    with pytest.raises(AccessDenied):
        await contacts.reassign(people.agent, contact_id, people.teammate.id)
    with pytest.raises(AccessDenied):
        await contacts.reassign(people.manager, contact_id, people.outsider.id)
    moved = await contacts.reassign(people.manager, contact_id, people.teammate.id)
    assert moved.owner_id == people.teammate.id
    with pytest.raises(StaleVersion):
        await contacts.reassign(SYSTEM, contact_id, people.outsider.id, expected_version=1)
    assert {u.name for u in await contacts.owners_for(people.manager)} == {
        "Minh Manager",
        "Lan Agent",
        "Tuấn Teammate",
    }
