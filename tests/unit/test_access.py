"""Access (DESIGN §1 "People and access"): admins from configuration, everyone else asks."""

from __future__ import annotations

import pytest

from domain.access import SYSTEM
from domain.errors import AccessDenied, InvalidInput
from domain.model import RequestStatus, Role
from domain.services.users import UserService
from tests.unit.conftest import People
from tests.unit.fakes import FakeDatabase


@pytest.fixture
def users(db: FakeDatabase) -> UserService:
    return UserService(db.uow)


async def test_configured_admin_ids_become_active_admins(users: UserService) -> None:
    await users.ensure_admins([77])
    await users.ensure_admins([77])
    [admin] = await users.everyone()
    assert (admin.telegram_id, admin.role, admin.active) == (77, Role.ADMIN, True)


async def test_asking_twice_while_waiting_makes_one_request(users: UserService) -> None:
    first, new = await users.request_access(500, "  Nguyễn   Lan ", "lan", "vi")
    again, new_again = await users.request_access(500, "Nguyễn Lan", "lan", "vi")
    assert (new, new_again) == (True, False)
    assert again.id == first.id
    assert first.name == "Nguyễn Lan"


async def test_an_admin_approves_as_agent_of_a_team(users: UserService, people: People) -> None:
    request, _ = await users.request_access(500, "Lan", None, "vi")
    assert request.id is not None
    decision = await users.decide(people.admin, request.id, approve=True, team=" north ")
    assert decision.user is not None
    assert (decision.user.role, decision.user.team, decision.user.language) == (
        Role.AGENT,
        "north",
        "vi",
    )
    assert decision.request.status is RequestStatus.APPROVED
    assert (await users.by_telegram_id(500)) is not None


async def test_a_request_is_decided_once_and_the_second_admin_is_told_who_did(
    users: UserService, people: People
) -> None:
    request, _ = await users.request_access(500, "Lan", None, None)
    assert request.id is not None
    await users.decide(people.admin, request.id, approve=False)
    with pytest.raises(InvalidInput, match="Ada Admin already rejected"):
        await users.decide(people.admin, request.id, approve=True)
    assert await users.by_telegram_id(500) is None


async def test_only_admins_decide_and_nobody_is_approved_as_admin(
    users: UserService, people: People
) -> None:
    request, _ = await users.request_access(500, "Lan", None, None)
    assert request.id is not None
    with pytest.raises(AccessDenied):
        await users.decide(people.manager, request.id, approve=True)
    with pytest.raises(InvalidInput, match="ADMIN_IDS"):
        await users.decide(people.admin, request.id, approve=True, role=Role.ADMIN)


async def test_an_owner_created_before_telegram_is_linked_on_approval(
    users: UserService, people: People
) -> None:
    owner = await users.add(SYSTEM, "Bùi Ngọc Lan", Role.AGENT, team="south")
    request, _ = await users.request_access(900, "Bui Ngoc Lan", None, None)
    assert request.id is not None
    decision = await users.decide(people.admin, request.id, approve=True)
    assert decision.user is not None
    assert decision.user.id == owner.id
    assert decision.user.telegram_id == 900
    assert decision.user.team == "south"


async def test_a_known_or_switched_off_person_does_not_ask_again(
    users: UserService, people: People
) -> None:
    with pytest.raises(InvalidInput, match="already have access"):
        await users.request_access(3, "Lan", None, None)
    assert people.agent.id is not None
    await users.set_active(people.admin, people.agent.id, False)
    with pytest.raises(AccessDenied, match="switched off"):
        await users.request_access(3, "Lan", None, None)


async def test_admins_change_roles_and_teams_but_not_their_own_rights(
    users: UserService, people: People
) -> None:
    assert people.agent.id is not None
    assert people.admin.id is not None
    promoted = await users.set_role(people.admin, people.agent.id, Role.MANAGER)
    moved = await users.set_team(people.admin, people.agent.id, "south")
    assert (promoted.role, moved.team) == (Role.MANAGER, "south")
    assert await users.teams() == ["north", "south"]
    with pytest.raises(InvalidInput, match="yourself"):
        await users.set_active(people.admin, people.admin.id, False)
    with pytest.raises(AccessDenied):
        await users.set_role(people.manager, people.agent.id, Role.AGENT)


async def test_a_language_is_one_the_bot_speaks(users: UserService, people: People) -> None:
    assert (await users.set_language(people.agent, "vi")).language == "vi"
    with pytest.raises(InvalidInput):
        await users.set_language(people.agent, "fr")
