"""Saved views (ISSUE 5, part 4) filter by stage, category, owner, source, tag, custom field,
idleness and creation date, within the caller's scope, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.container import Services
from domain.access import SYSTEM
from domain.errors import AccessDenied, InvalidInput
from domain.model import Role, User
from domain.services.contacts import ContactDraft


@pytest.fixture
async def crm(services: Services) -> tuple[Services, User, User]:
    await services.stages.apply_template(SYSTEM, "amis")
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=1)
    boss = await services.users.add(SYSTEM, "Minh", Role.MANAGER, team="north", telegram_id=2)
    drafts = [
        ContactDraft(
            name="A",
            stage="Lead",
            source="Zalo",
            tags=["VIP"],
            owner="Lan",
            created_at=datetime(2026, 1, 5, tzinfo=UTC),
            custom_fields={"Ngành": "Bán lẻ"},
        ),
        ContactDraft(
            name="B",
            stage="SQL",
            source="zalo",
            owner="Lan",
            created_at=datetime(2026, 2, 5, tzinfo=UTC),
        ),
        ContactDraft(name="C", stage="Customer", source="Website", tags=["vip"], owner="Minh"),
        ContactDraft(name="D", source="Zalo", owner="Lan"),
    ]
    for draft in drafts:
        await services.contacts.add(SYSTEM, draft)
    return services, lan, boss


async def names(services: Services, user: User, text: str) -> list[str]:
    view = await services.views.save(user, f"v {text}", text)
    assert view.id is not None
    _, found = await services.views.open(user, view.id)
    return sorted(d.contact.name or "" for d in found)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stage=Lead", ["A"]),
        ("stage=Lead,SQL", ["A", "B"]),
        ("stage=none", ["D"]),
        ("category=open", ["A", "B"]),
        ("category=won", ["C"]),
        ("source=ZALO", ["A", "B", "D"]),
        ("tag=vip", ["A", "C"]),
        ("owner=lan", ["A", "B", "D"]),
        ('field:Ngành="Bán lẻ"', ["A"]),
        ("created=2026-01-01..2026-01-31", ["A"]),
        ("created=2026-02-05", ["B"]),
        ("source=zalo category=open", ["A", "B"]),
    ],
)
async def test_a_view_finds_exactly_the_contacts_its_filter_names(
    crm: tuple[Services, User, User], text: str, expected: list[str]
) -> None:
    services, _, boss = crm
    assert await names(services, boss, text) == expected


async def test_a_view_shows_only_what_the_user_may_see(crm: tuple[Services, User, User]) -> None:
    services, lan, boss = crm
    assert await names(services, lan, "tag=vip") == ["A"]
    shared = await services.views.save(boss, "VIP", "tag=vip", shared=True)
    assert [v.name for v in await services.views.visible(lan)] == ["VIP", "v tag=vip"]
    assert shared.id is not None
    _, found = await services.views.open(lan, shared.id)
    assert [d.contact.name for d in found] == ["A"]
    with pytest.raises(AccessDenied):
        await services.views.delete(lan, shared.id)


async def test_a_bad_filter_is_refused_naming_what_is_wrong(
    crm: tuple[Services, User, User],
) -> None:
    services, lan, _ = crm
    for text, reason in (
        ("stage=Nowhere", "no stage called"),
        ("colour=red", "Unknown key"),
        ("idle=zero", "idle"),
        ("created=2026-13-01", "created"),
    ):
        with pytest.raises(InvalidInput, match=reason):
            await services.views.save(lan, "x", text)
    with pytest.raises(AccessDenied):
        await services.views.save(lan, "mine", "stage=Lead", shared=True)
    await services.views.save(lan, "Hot", "stage=SQL")
    with pytest.raises(InvalidInput, match="exists"):
        await services.views.save(lan, "hot", "stage=Lead")
