"""Events from outside (ISSUE 7): contacts they create, owners they assign, the rules they
follow, and what automation may not do (DESIGN §1: only forward, never out of won or lost)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.access import SYSTEM
from domain.errors import AccessDenied, IdempotencyKeyReused, InvalidEvent
from domain.model import Category, EventKind, Outcome, Role, Source, User
from domain.services.contacts import ContactDraft, ContactService
from domain.services.events import EventDraft, EventService, LeadRouting
from domain.services.stages import StageService
from domain.transitions import Policy
from tests.unit.conftest import Clock, People
from tests.unit.fakes import FakeDatabase

PHONE = "0912 345 678"


def make_events(db: FakeDatabase, clock: Clock, routing: LeadRouting | None = None) -> EventService:
    return EventService(db.uow, default_region="VN", policy=Policy(), routing=routing, clock=clock)


@pytest.fixture
def events(db: FakeDatabase, clock: Clock) -> EventService:
    return make_events(db, clock, LeadRouting(team="north"))


def form(**fields: object) -> EventDraft:
    return EventDraft(kind="form_submitted", **fields)  # type: ignore[arg-type]


@pytest.mark.usefixtures("amis")
async def test_a_form_for_an_unknown_phone_creates_a_lead(
    events: EventService, people: People
) -> None:
    result = await events.record("website", form(phone=PHONE, name="Nguyễn Văn An"))
    contact = result.contact.contact
    assert (contact.phone, contact.name) == ("+84912345678", "Nguyễn Văn An")
    assert result.contact.stage is not None
    assert result.contact.stage.name == "Lead"
    assert result.event.outcome is Outcome.MOVED
    assert result.event.created_contact


@pytest.mark.usefixtures("amis")
async def test_a_new_lead_takes_the_source_of_the_event_else_the_key_name(
    events: EventService, people: People
) -> None:
    given = await events.record("website", form(phone=PHONE, source="Landing page"))
    assert given.contact.contact.source == "Landing page"
    default = await events.record("website", form(email="an@example.com"))
    assert default.contact.contact.source == "website"


@pytest.mark.usefixtures("amis")
async def test_the_move_into_lead_is_history_with_source_automation(
    events: EventService, contacts: ContactService, people: People
) -> None:
    result = await events.record("website", form(phone=PHONE))
    assert result.contact.contact.id is not None
    [change] = await contacts.history(SYSTEM, result.contact.contact.id)
    assert (change.source, change.reason, change.by_user_id) == (
        Source.AUTOMATION,
        "form_submitted",
        None,
    )


@pytest.mark.usefixtures("amis")
async def test_new_leads_go_in_turn_to_the_active_agents_of_the_team(
    db: FakeDatabase, events: EventService, people: People
) -> None:
    async with db.uow() as uow:
        await uow.users.add(User(None, "Off Agent", Role.AGENT, team="north", active=False))
        await uow.commit()
    owners = []
    for n in range(5):
        result = await events.record("website", form(phone=f"09123456{n:02}"))
        assert result.contact.owner is not None
        owners.append(result.contact.owner.name)
    assert owners == ["Lan Agent", "Tuấn Teammate"] * 2 + ["Lan Agent"]


@pytest.mark.usefixtures("amis")
async def test_without_a_team_leads_go_in_turn_to_every_active_agent(
    db: FakeDatabase, clock: Clock, people: People
) -> None:
    events = make_events(db, clock)
    owners = [
        (await events.record("web", form(phone=f"09123456{n:02}"))).contact.owner for n in range(3)
    ]
    assert [o.name if o else None for o in owners] == [
        "Lan Agent",
        "Tuấn Teammate",
        "Otto Outsider",
    ]


@pytest.mark.usefixtures("amis")
async def test_a_source_with_a_fixed_owner_gives_its_leads_to_that_owner(
    db: FakeDatabase, clock: Clock, people: People
) -> None:
    events = make_events(db, clock, LeadRouting(team="north", owners={"facebook": "5"}))
    result = await events.record("ads", form(phone=PHONE, source="Facebook"))
    assert result.contact.owner == people.outsider


@pytest.mark.usefixtures("amis")
async def test_a_fixed_owner_who_is_switched_off_lets_the_lead_go_in_turn(
    db: FakeDatabase, clock: Clock, people: People
) -> None:
    await _switch_off(db, people.outsider)
    events = make_events(db, clock, LeadRouting(team="north", owners={"Facebook": "Otto Outsider"}))
    result = await events.record("ads", form(phone=PHONE, source="facebook"))
    assert result.contact.owner == people.agent


@pytest.mark.usefixtures("amis")
async def test_the_owner_of_a_new_lead_gets_a_notice(events: EventService, people: People) -> None:
    result = await events.record("website", form(phone=PHONE))
    [notice] = result.notices
    assert (notice.user_id, notice.contact_id) == (people.agent.id, result.contact.contact.id)
    assert [n.id for n in await events.pending_notices()] == [notice.id]


@pytest.mark.usefixtures("amis")
async def test_admins_are_told_of_a_lead_nobody_can_own(
    db: FakeDatabase, clock: Clock, people: People
) -> None:
    events = make_events(db, clock, LeadRouting(team="nowhere"))
    result = await events.record("website", form(phone=PHONE))
    assert result.contact.owner is None
    assert [n.user_id for n in result.notices] == [people.admin.id]


@pytest.mark.usefixtures("amis")
async def test_sent_notices_are_no_longer_pending(events: EventService, people: People) -> None:
    result = await events.record("website", form(phone=PHONE))
    await events.notices_sent([n.id for n in result.notices if n.id is not None])
    assert await events.pending_notices() == []


@pytest.mark.usefixtures("amis")
async def test_an_event_for_a_known_contact_creates_no_contact_and_no_notice(
    events: EventService, people: People
) -> None:
    first = await events.record("website", form(phone=PHONE))
    again = await events.record("website", EventDraft("email_opened", phone="+84912345678"))
    assert again.contact.contact.id == first.contact.contact.id
    assert not again.event.created_contact
    assert again.notices == []
    assert again.event.outcome is Outcome.UNCHANGED


@pytest.mark.usefixtures("amis")
async def test_the_funnel_events_move_a_lead_forward_stage_by_stage(
    events: EventService, people: People
) -> None:
    stages = []
    for kind in ("form_submitted", "opportunity_pool", "opportunity_created", "revenue_booked"):
        result = await events.record("crm", EventDraft(kind, external_id="X-1"))
        assert result.contact.stage is not None
        stages.append(result.contact.stage.name)
    assert stages == ["Lead", "MQL", "SQL", "Customer"]


@pytest.mark.usefixtures("amis")
async def test_the_second_revenue_event_makes_a_loyal_customer(
    events: EventService, people: People
) -> None:
    first = await events.record("books", EventDraft("revenue_booked", email="an@example.com"))
    second = await events.record("books", EventDraft("revenue_booked", email="an@example.com"))
    assert first.contact.stage is not None
    assert first.contact.stage.name == "Customer"
    assert second.contact.stage is not None
    assert second.contact.stage.name == "Loyal customer"
    assert second.contact.stage.category is Category.WON


@pytest.mark.usefixtures("amis")
async def test_revenue_for_a_lost_contact_leaves_it_lost_and_records_why(
    events: EventService, contacts: ContactService, people: People
) -> None:
    lost = await contacts.add(
        people.admin,
        ContactDraft(name="Gone", phone=PHONE, stage="Disqualified", lost_reason="Price"),
    )
    result = await events.record("books", EventDraft("revenue_booked", phone=PHONE, value="900"))
    assert result.contact.stage is not None
    assert result.contact.stage.name == "Disqualified"
    assert result.event.outcome is Outcome.DECLINED
    assert result.event.detail is not None
    assert "never moves a won or lost contact" in result.event.detail
    assert lost.id is not None
    [entry] = await contacts.timeline(SYSTEM, lost.id, ["event"])
    assert entry.event == result.event


@pytest.mark.usefixtures("amis")
async def test_automation_never_moves_a_contact_back(events: EventService, people: People) -> None:
    await events.record("crm", EventDraft("opportunity_created", phone=PHONE))
    result = await events.record("web", EventDraft("page_viewed", phone=PHONE))
    assert result.contact.stage is not None
    assert result.contact.stage.name == "SQL"
    assert result.event.outcome is Outcome.DECLINED
    assert result.event.detail == "Automation only moves contacts forward."


@pytest.mark.usefixtures("amis")
async def test_unsubscribing_moves_an_open_lead_to_lost_with_the_event_as_reason(
    events: EventService, contacts: ContactService, people: People
) -> None:
    result = await events.record("mail", EventDraft("unsubscribed", email="an@example.com"))
    assert result.contact.stage is not None
    assert result.contact.stage.name == "Unsubscribed"
    assert result.contact.contact.id is not None
    [change] = await contacts.history(SYSTEM, result.contact.contact.id)
    assert change.reason == "unsubscribed"


@pytest.mark.usefixtures("amis")
async def test_a_replayed_idempotency_key_changes_nothing_and_answers_as_the_first_time(
    db: FakeDatabase, events: EventService, people: People
) -> None:
    draft = EventDraft("revenue_booked", phone=PHONE, idempotency_key="inv-1")
    first = await events.record("books", draft)
    commits = db.commits
    again = await events.record("books", draft)
    assert again.replayed
    assert again.event == first.event
    assert again.contact.stage == first.contact.stage
    assert again.notices == []
    assert db.commits == commits
    assert len(db.state.events) == 1


@pytest.mark.usefixtures("amis")
async def test_an_idempotency_key_reused_for_another_event_is_refused(
    events: EventService, people: People
) -> None:
    await events.record("books", EventDraft("revenue_booked", phone=PHONE, idempotency_key="k"))
    with pytest.raises(IdempotencyKeyReused) as refused:
        await events.record("books", EventDraft("unsubscribed", phone=PHONE, idempotency_key="k"))
    assert refused.value.field == "idempotency_key"


@pytest.mark.usefixtures("amis")
async def test_the_same_idempotency_key_from_another_api_key_is_another_event(
    events: EventService, people: People
) -> None:
    await events.record("books", EventDraft("revenue_booked", phone=PHONE, idempotency_key="1"))
    other = await events.record(
        "shop", EventDraft("revenue_booked", phone=PHONE, idempotency_key="1")
    )
    assert not other.replayed
    assert other.contact.stage is not None
    assert other.contact.stage.name == "Loyal customer"


@pytest.mark.usefixtures("amis")
async def test_an_event_fills_what_the_contact_lacks_and_overwrites_nothing(
    events: EventService, contacts: ContactService, people: People
) -> None:
    known = await contacts.add(people.agent, ContactDraft(phone=PHONE, source="Referral"))
    result = await events.record(
        "web", form(phone=PHONE, name="An", company="Minh Phát", source="Landing page")
    )
    contact = result.contact.contact
    assert contact.id == known.id
    assert (contact.name, result.contact.company, contact.source) == ("An", "Minh Phát", "Referral")
    assert contact.version == known.version + 1


@pytest.mark.usefixtures("amis")
async def test_identifiers_of_different_contacts_pick_the_external_id_then_email_then_phone(
    events: EventService, contacts: ContactService, people: People
) -> None:
    by_phone = await contacts.add(people.agent, ContactDraft(phone=PHONE))
    by_email = await contacts.add(people.agent, ContactDraft(email="an@example.com"))
    result = await events.record("web", form(phone=PHONE, email="an@example.com"))
    assert result.contact.contact.id == by_email.id != by_phone.id


@pytest.mark.usefixtures("amis")
async def test_an_admin_points_a_trigger_at_another_stage(
    events: EventService, stages: StageService, people: People
) -> None:
    mql_id = next(s.stage.id for s in await stages.summaries() if s.stage.name == "MQL")
    await events.set_rule(people.admin, "form_submitted", mql_id)
    rule = next(r for r in await events.rules() if r.trigger == "form_submitted")
    assert (rule.stage.name if rule.stage else None, rule.default) == ("MQL", False)
    result = await events.record("web", form(phone=PHONE))
    assert result.contact.stage is not None
    assert result.contact.stage.name == "MQL"


@pytest.mark.usefixtures("amis")
async def test_a_rule_set_to_no_stage_stores_the_event_and_moves_nothing(
    events: EventService, people: People
) -> None:
    await events.set_rule(people.admin, "page_viewed", None)
    result = await events.record("web", EventDraft("page_viewed", phone=PHONE))
    assert result.contact.stage is None
    assert result.event.outcome is Outcome.NO_RULE
    await events.reset_rule(people.admin, "page_viewed")
    rule = next(r for r in await events.rules() if r.trigger == "page_viewed")
    assert rule.default


@pytest.mark.usefixtures("amis")
async def test_a_renamed_default_stage_is_followed_once_an_admin_chose_it(
    events: EventService, stages: StageService, people: People
) -> None:
    await stages.rename(SYSTEM, "Lead", "Prospect")
    assert next(r for r in await events.rules() if r.trigger == "form_submitted").stage is None
    prospect = next(s.stage for s in await stages.summaries() if s.stage.name == "Prospect")
    await events.set_rule(people.admin, "form_submitted", prospect.id)
    await stages.rename(SYSTEM, "Prospect", "New lead")
    rule = next(r for r in await events.rules() if r.trigger == "form_submitted")
    assert rule.stage is not None
    assert rule.stage.name == "New lead"


async def test_only_admins_change_rules(events: EventService, people: People) -> None:
    with pytest.raises(AccessDenied):
        await events.set_rule(people.manager, "form_submitted", None)


@pytest.mark.usefixtures("amis")
async def test_a_rule_pointing_at_a_deleted_stage_declines_and_says_so(
    events: EventService, stages: StageService, people: People
) -> None:
    mql_id = next(s.stage.id for s in await stages.summaries() if s.stage.name == "MQL")
    await events.set_rule(people.admin, "form_submitted", mql_id)
    await stages.delete(SYSTEM, "MQL", no_stage=True)
    result = await events.record("web", form(phone=PHONE))
    assert result.event.outcome is Outcome.DECLINED
    assert result.event.detail == "Stage 'MQL' was deleted; choose another stage."


async def test_without_the_amis_stages_events_store_contacts_and_move_nothing(
    events: EventService, people: People
) -> None:
    result = await events.record("web", form(phone=PHONE))
    assert result.contact.stage is None
    assert result.event.outcome is Outcome.NO_RULE


@pytest.mark.parametrize(
    ("draft", "field"),
    [
        (EventDraft("form_sent", phone=PHONE), "event"),
        (EventDraft("form_submitted", phone="12"), "phone"),
        (EventDraft("form_submitted", email="not-an-email"), "email"),
        (EventDraft("form_submitted", name="An"), "phone"),
        (EventDraft("revenue_booked", phone=PHONE, value="1.005"), "value"),
        (EventDraft("revenue_booked", phone=PHONE, value="-1"), "value"),
        (EventDraft("revenue_booked", phone=PHONE, value="1e20"), "value"),
        (EventDraft("form_submitted", phone=PHONE, name="x" * 201), "name"),
        (EventDraft("form_submitted", phone=PHONE, custom_fields={"": "x"}), "custom_fields"),
    ],
)
async def test_an_invalid_event_names_the_field_at_fault(
    events: EventService, draft: EventDraft, field: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        await events.record("web", draft)
    assert refused.value.field == field


@pytest.mark.usefixtures("amis")
async def test_a_value_a_defined_field_refuses_changes_nothing(
    db: FakeDatabase, events: EventService, people: People
) -> None:
    from domain.model import FieldKind
    from domain.services.fields import FieldService

    await FieldService(db.uow).add(people.admin, "Budget", FieldKind.NUMBER)
    with pytest.raises(InvalidEvent) as refused:
        await events.record("web", form(phone=PHONE, custom_fields={"budget": "a lot"}))
    assert refused.value.field == "custom_fields.Budget"
    assert db.state.contacts == {}
    assert db.state.events == {}


@pytest.mark.usefixtures("amis")
async def test_a_new_lead_keeps_the_value_and_custom_fields_of_the_event(
    events: EventService, people: People
) -> None:
    result = await events.record(
        "books",
        EventDraft(
            "revenue_booked", phone=PHONE, value=Decimal("1500000"), custom_fields={"Plan": "Pro"}
        ),
    )
    assert result.contact.contact.value == Decimal("1500000")
    assert result.contact.contact.custom_fields == {"Plan": "Pro"}
    assert result.event.kind is EventKind.REVENUE_BOOKED


async def _switch_off(db: FakeDatabase, user: User) -> None:
    async with db.uow() as uow:
        user.active = False
        await uow.users.update(user)
        await uow.commit()


@pytest.mark.usefixtures("amis")
async def test_events_written_together_apply_one_after_the_other(
    db: FakeDatabase, events: EventService, people: People
) -> None:
    results = await events.record_many(
        [
            ("web", form(phone=PHONE, idempotency_key="a")),
            ("books", EventDraft("revenue_booked", phone=PHONE)),
            ("books", EventDraft("revenue_booked", phone=PHONE)),
            ("web", form(phone=PHONE, idempotency_key="a")),
            ("web", form(phone="12")),
            ("web", EventDraft("unsubscribed", phone=PHONE, idempotency_key="a")),
        ]
    )
    stages = [
        r.contact.stage.name if not isinstance(r, Exception) and r.contact.stage else type(r)
        for r in results
    ]
    assert stages == [
        "Lead",
        "Customer",
        "Loyal customer",
        "Lead",
        InvalidEvent,
        IdempotencyKeyReused,
    ]
    assert [len(db.state.contacts), len(db.state.events), len(db.state.history)] == [1, 3, 3]
    [contact] = db.state.contacts.values()
    assert contact.version == 3
