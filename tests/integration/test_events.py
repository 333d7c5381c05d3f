"""Events and API keys on SQLite and PostgreSQL: the rules as on fakes, and what only a real
database shows — unique keys and locks under concurrent events."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

import pytest

from bot.container import Services, build_services
from domain.access import SYSTEM
from domain.errors import IdempotencyKeyReused
from domain.model import Outcome, Role, Source
from domain.services.contacts import ContactDraft
from domain.services.events import EventDraft, EventService

PHONE = "+84912345678"


@pytest.fixture
async def amis(services: Services) -> Services:
    await services.stages.apply_template(SYSTEM, "amis")
    return services


def events_for_team(services: Services, team: str) -> EventService:
    settings = services.settings.model_copy(update={"leads_team": team})
    return build_services(settings, services.engine).events


async def agents(services: Services, *names: str, team: str = "north") -> list[int]:
    made = [await services.users.add(SYSTEM, name, Role.AGENT, team=team) for name in names]
    return [user.id for user in made if user.id is not None]


async def test_a_form_for_a_new_phone_stores_a_lead_its_history_and_the_event(
    amis: Services,
) -> None:
    await agents(amis, "Lan")
    result = await amis.events.record(
        "website", EventDraft("form_submitted", phone="0912 345 678", name="An", company="Minh")
    )
    contact_id = result.contact.contact.id
    assert contact_id is not None
    details = await amis.contacts.get(SYSTEM, contact_id)
    assert details.stage is not None
    assert (details.stage.name, details.company, details.contact.source) == (
        "Lead",
        "Minh",
        "website",
    )
    [change] = await amis.contacts.history(SYSTEM, contact_id)
    assert change.source is Source.AUTOMATION
    assert [n.contact_id for n in await amis.events.pending_notices()] == []  # Lan has no Telegram


async def test_revenue_twice_ends_in_loyal_customer_and_lost_stays_lost(amis: Services) -> None:
    for _ in range(2):
        result = await amis.events.record("books", EventDraft("revenue_booked", email="a@b.vn"))
    assert result.contact.stage is not None
    assert result.contact.stage.name == "Loyal customer"
    lost = await amis.contacts.add(
        SYSTEM, ContactDraft(phone=PHONE, stage="Disqualified", lost_reason="Price")
    )
    declined = await amis.events.record("books", EventDraft("revenue_booked", phone=PHONE))
    assert declined.contact.stage is not None
    assert declined.contact.stage.name == "Disqualified"
    assert lost.id is not None
    [entry] = await amis.contacts.timeline(SYSTEM, lost.id, ["event"])
    assert entry.event is not None
    assert entry.event.outcome is Outcome.DECLINED
    assert "never moves a won or lost contact" in (entry.event.detail or "")


async def test_a_replayed_key_returns_the_first_result(amis: Services) -> None:
    draft = EventDraft("revenue_booked", phone=PHONE, idempotency_key="inv-7")
    first = await amis.events.record("books", draft)
    again = await amis.events.record("books", draft)
    assert again.replayed
    assert again.event.id == first.event.id
    assert again.contact.contact.version == first.contact.contact.version
    with pytest.raises(IdempotencyKeyReused):
        await amis.events.record("books", replace(draft, value="5"))


async def test_concurrent_events_with_one_key_have_their_effect_once(amis: Services) -> None:
    draft = EventDraft("revenue_booked", phone=PHONE, idempotency_key="inv-8")
    results = await asyncio.gather(*(amis.events.record("books", draft) for _ in range(6)))
    assert len({r.event.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    details = results[0].contact
    assert details.stage is not None
    assert details.stage.name == "Customer"


async def test_concurrent_events_for_one_new_contact_create_it_once_and_count_revenue(
    amis: Services,
) -> None:
    results = await asyncio.gather(
        *(amis.events.record("books", EventDraft("revenue_booked", phone=PHONE)) for _ in range(5))
    )
    assert len({r.contact.contact.id for r in results}) == 1
    assert sum(r.event.created_contact for r in results) == 1
    contact_id = results[0].contact.contact.id
    assert contact_id is not None
    final = await amis.contacts.get(SYSTEM, contact_id)
    assert final.stage is not None
    assert final.stage.name == "Loyal customer"


async def test_concurrent_new_leads_go_to_agents_in_turn(amis: Services) -> None:
    ids = await agents(amis, "Lan", "Tuấn", "Mai")
    events = events_for_team(amis, "north")
    results = await asyncio.gather(
        *(
            events.record("web", EventDraft("form_submitted", phone=f"+8491234{n:04}"))
            for n in range(9)
        )
    )
    owners = Counter(r.contact.contact.owner_id for r in results)
    assert owners == dict.fromkeys(ids, 3)


async def test_notices_wait_until_marked_sent(amis: Services) -> None:
    lan = await amis.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=2003)
    result = await amis.events.record("web", EventDraft("form_submitted", phone=PHONE))
    [notice] = await amis.events.pending_notices()
    assert (notice.user_id, notice.contact_id) == (lan.id, result.contact.contact.id)
    assert notice.id is not None
    await amis.events.notices_sent([notice.id])
    assert await amis.events.pending_notices() == []


async def test_rules_are_kept_per_trigger_and_reset_to_the_default(amis: Services) -> None:
    mql = await amis.contacts.stage_by_name("MQL")
    await amis.events.set_rule(SYSTEM, "page_viewed", mql.id)
    await amis.events.set_rule(SYSTEM, "page_viewed", None)
    await amis.events.set_rule(SYSTEM, "cta_clicked", mql.id)
    rules = {r.trigger: r for r in await amis.events.rules()}
    assert (rules["page_viewed"].stage, rules["page_viewed"].default) == (None, False)
    assert rules["cta_clicked"].stage == mql
    await amis.events.reset_rule(SYSTEM, "cta_clicked")
    rules = {r.trigger: r for r in await amis.events.rules()}
    assert rules["cta_clicked"].default
    assert rules["cta_clicked"].stage is not None
    assert rules["cta_clicked"].stage.name == "Lead"


async def test_api_keys_are_stored_hashed_and_revoked(services: Services) -> None:
    key, secret = await services.api_keys.create(SYSTEM, "website")
    assert await services.api_keys.authenticate(secret) == key
    await services.api_keys.revoke(SYSTEM, "website")
    assert await services.api_keys.authenticate(secret) is None
    _, again = await services.api_keys.create(SYSTEM, "website")
    assert await services.api_keys.authenticate(again) is not None


async def test_two_workers_writing_overlapping_batches_lose_nothing(amis: Services) -> None:
    await agents(amis, "Lan", "Tuấn")
    other = build_services(amis.settings.model_copy(update={"leads_team": "north"}))
    mine = events_for_team(amis, "north")
    phones = [f"+8491234{n:04}" for n in range(12)]

    def batch(first: int) -> list[tuple[str, EventDraft]]:
        return [
            (
                "web",
                EventDraft(
                    "revenue_booked", phone=phones[(first + n) % 12], idempotency_key=f"{first}-{n}"
                ),
            )
            for n in range(12)
        ]

    try:
        rounds = await asyncio.gather(
            *((mine if n % 2 else other.events).record_many(batch(n)) for n in range(6))
        )
    finally:
        await other.close()
    assert all(not isinstance(outcome, Exception) for outcomes in rounds for outcome in outcomes)
    found = [(await amis.contacts.find(SYSTEM, phone))[0] for phone in phones]
    assert {d.stage.name if d.stage else None for d in found} == {"Loyal customer"}
