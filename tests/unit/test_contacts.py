"""Contacts (DESIGN §1 "Contacts and companies", "Activities", "People and access")."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.access import SYSTEM
from domain.errors import (
    AccessDenied,
    DuplicateContact,
    InvalidInput,
    NothingToUndo,
    UserNotFound,
)
from domain.model import ActivityKind
from domain.services.contacts import ContactDraft, ContactService
from domain.text import fold
from tests.unit.conftest import Clock, People

pytestmark = pytest.mark.usefixtures("amis")


async def test_phone_is_stored_in_e164_using_the_default_region(
    contacts: ContactService,
) -> None:
    contact = await contacts.add(SYSTEM, ContactDraft(name="An", phone="0912 345 678"))
    assert contact.phone == "+84912345678"
    with pytest.raises(InvalidInput, match="not a phone"):
        await contacts.add(SYSTEM, ContactDraft(name="Bad", phone="12ab"))


async def test_email_is_stored_lower_case_and_must_look_like_one(
    contacts: ContactService,
) -> None:
    contact = await contacts.add(SYSTEM, ContactDraft(email=" An.Nguyen@Example.VN "))
    assert contact.email == "an.nguyen@example.vn"
    with pytest.raises(InvalidInput):
        await contacts.add(SYSTEM, ContactDraft(email="not-an-email"))


async def test_a_contact_needs_a_name_an_identifier_or_a_company(
    contacts: ContactService,
) -> None:
    with pytest.raises(InvalidInput):
        await contacts.add(SYSTEM, ContactDraft(name="  "))
    assert (await contacts.add(SYSTEM, ContactDraft(company="Vingroup"))).company_id is not None


@pytest.mark.parametrize(
    ("field", "first", "again"),
    [
        ("phone", "+84912345678", "0912-345-678"),
        ("email", "lan@example.com", "LAN@example.com"),
        ("external_id", "HS-1", "HS-1"),
    ],
)
async def test_a_duplicate_identifier_finds_the_existing_contact_instead_of_creating_one(
    contacts: ContactService, field: str, first: str, again: str
) -> None:
    existing = await contacts.add(SYSTEM, ContactDraft(name="Lan", **{field: first}))
    with pytest.raises(DuplicateContact) as refused:
        await contacts.add(SYSTEM, ContactDraft(name="Lan again", **{field: again}))
    assert refused.value.existing_id == existing.id
    assert len(await contacts.find(SYSTEM, "lan")) == 1


@pytest.mark.parametrize(
    "query",
    [
        "nguyen van an",
        "Nguyễn Văn An",
        "NGUYEN",
        "van an",
        "nguy",
        "0912 345 678",
        "+84912345678",
        "84912345678",
        "an@example.vn",
        "CRM-7",
        "dai phat",
        "Đại",
    ],
)
async def test_search_finds_by_phone_email_id_and_by_name_or_company_ignoring_diacritics(
    contacts: ContactService, query: str
) -> None:
    await contacts.add(
        SYSTEM,
        ContactDraft(
            name="Nguyễn Văn An",
            phone="+84912345678",
            email="an@example.vn",
            external_id="CRM-7",
            company="Công ty Đại Phát",
        ),
    )
    await contacts.add(SYSTEM, ContactDraft(name="Someone Else", phone="+84987654321"))
    found = await contacts.find(SYSTEM, query)
    assert [d.contact.name for d in found] == ["Nguyễn Văn An"]
    assert found[0].company == "Công ty Đại Phát"


async def test_search_needs_every_word(contacts: ContactService) -> None:
    await contacts.add(SYSTEM, ContactDraft(name="Nguyễn Văn An"))
    await contacts.add(SYSTEM, ContactDraft(name="Nguyễn Thị Bình"))
    assert [d.contact.name for d in await contacts.find(SYSTEM, "nguyen binh")] == [
        "Nguyễn Thị Bình"
    ]
    assert await contacts.find(SYSTEM, "   ") == []


async def test_search_sees_only_the_callers_scope(contacts: ContactService, people: People) -> None:
    for owner in (people.agent, people.teammate, people.outsider):
        await contacts.add(owner, ContactDraft(name=f"Lead of {owner.name}"))

    async def visible(user: object) -> set[str]:
        return {d.contact.name or "" for d in await contacts.find(user, "lead")}  # type: ignore[arg-type]

    assert await visible(people.agent) == {"Lead of Lan Agent"}
    assert await visible(people.manager) == {"Lead of Lan Agent", "Lead of Tuấn Teammate"}
    assert len(await visible(people.admin)) == 3


async def test_the_creator_owns_a_new_contact_unless_a_manager_assigns_it(
    contacts: ContactService, people: People
) -> None:
    mine = await contacts.add(people.agent, ContactDraft(name="Mine"))
    assert mine.owner_id == people.agent.id
    with pytest.raises(AccessDenied):
        await contacts.add(people.agent, ContactDraft(name="Gift", owner="Tuấn Teammate"))
    given = await contacts.add(people.manager, ContactDraft(name="Gift", owner="tuan teammate"))
    assert given.owner_id == people.teammate.id
    with pytest.raises(AccessDenied):
        await contacts.add(people.manager, ContactDraft(name="Far", owner="Otto Outsider"))
    by_telegram = await contacts.add(people.admin, ContactDraft(name="Far", owner="5"))
    assert by_telegram.owner_id == people.outsider.id
    with pytest.raises(UserNotFound):
        await contacts.add(people.admin, ContactDraft(name="Nobody's", owner="Ghost"))


async def test_a_contact_is_found_by_reference_only_within_scope(
    contacts: ContactService, people: People
) -> None:
    contact = await contacts.add(people.outsider, ContactDraft(name="X", phone="0901234567"))
    assert (await contacts.resolve(people.admin, "090 123 4567")).contact.id == contact.id
    assert (await contacts.resolve(people.admin, f"#{contact.id}")).contact.id == contact.id
    with pytest.raises(Exception, match="No contact"):
        await contacts.resolve(people.agent, "0901234567")


async def test_the_timeline_merges_activities_and_stage_changes_newest_first(
    contacts: ContactService, people: People, clock: Clock
) -> None:
    contact = await contacts.add(people.agent, ContactDraft(name="Chi", stage="Lead"))
    assert contact.id is not None
    clock.advance(hours=1)
    await contacts.log_activity(people.agent, contact.id, ActivityKind.CALL, "Called, no answer")
    clock.advance(hours=1)
    mql = await contacts.stage_by_name("MQL")
    await contacts.set_stage(people.agent, contact.id, mql.id)
    clock.advance(hours=1)
    await contacts.log_activity(
        people.agent,
        contact.id,
        ActivityKind.TASK,
        "Send quote",
        due_at=clock.now + timedelta(days=1),
    )
    timeline = await contacts.timeline(people.agent, contact.id)
    assert [(e.kind, e.text) for e in timeline] == [
        ("task", "Send quote"),
        ("stage", "Lead → MQL"),
        ("call", "Called, no answer"),
        ("stage", "— → Lead"),
    ]
    calls = await contacts.timeline(people.agent, contact.id, ["call"])
    assert [e.text for e in calls] == ["Called, no answer"]
    card = await contacts.get(people.agent, contact.id)
    assert card.contact.last_activity_at == clock.now


async def test_logging_needs_text_and_a_task_needs_a_due_date(
    contacts: ContactService, people: People
) -> None:
    contact = await contacts.add(people.agent, ContactDraft(name="Chi"))
    assert contact.id is not None
    with pytest.raises(InvalidInput):
        await contacts.log_activity(people.agent, contact.id, ActivityKind.NOTE, "   ")
    with pytest.raises(InvalidInput, match="due"):
        await contacts.log_activity(people.agent, contact.id, ActivityKind.TASK, "Call back")
    with pytest.raises(AccessDenied):
        await contacts.log_activity(people.outsider, contact.id, ActivityKind.NOTE, "peek")


def test_folding_removes_case_and_vietnamese_diacritics_including_d_stroke() -> None:
    assert fold("  Nguyễn   Văn ĐỨC ") == "nguyen van duc"
    assert fold("Trần Thị Bích Ngọc") == "tran thi bich ngoc"


def _fold_whole_text(text: str) -> str:
    """Folding as first defined, on the whole text at once."""
    special = str.maketrans({"đ": "d", "Đ": "d", "ð": "d", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l"})
    decomposed = unicodedata.normalize("NFKD", text.translate(special))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"\s+", " ", bare.casefold()).strip()


@given(
    st.text(
        st.one_of(
            st.sampled_from(" \t\u00a0\u2003\x1cđĐøłß¨ǅﬁ\u0301\u0323\u0308ÅẮệỳ"), st.characters()
        )
    )
)
def test_folding_word_by_word_gives_what_folding_the_whole_text_gives(text: str) -> None:
    assert fold(text) == _fold_whole_text(text)


async def _moved_to_mql(contacts: ContactService, people: People) -> tuple[int, int]:
    """A lead of Lan's that she just moved from Lead to MQL: its id and version."""
    contact = await contacts.add(people.agent, ContactDraft(name="Hà", stage="Lead"))
    assert contact.id is not None
    mql = await contacts.stage_by_name("MQL")
    moved = await contacts.set_stage(people.agent, contact.id, mql.id)
    return contact.id, moved.contact.version


async def test_an_undo_puts_the_lead_back_where_the_persons_own_latest_move_took_it_from(
    contacts: ContactService, people: People, clock: Clock
) -> None:
    contact_id, version = await _moved_to_mql(contacts, people)
    clock.advance(minutes=4)
    undone = await contacts.undo_move(people.agent, contact_id, expected_version=version)
    assert undone.change is not None
    assert undone.change.reason == "undone"
    assert [c.to_stage_id for c in await contacts.history(people.agent, contact_id)][-1] == (
        (await contacts.stage_by_name("Lead")).id
    )
    with pytest.raises(NothingToUndo):  # pressed again: nothing left to undo
        await contacts.undo_move(people.agent, contact_id, expected_version=version)


async def test_an_undone_lead_keeps_the_days_it_had_spent_in_its_stage(
    contacts: ContactService, people: People, clock: Clock
) -> None:
    contact = await contacts.add(people.agent, ContactDraft(name="Hà", stage="Lead"))
    assert contact.id is not None
    clock.advance(days=3)
    moved = await contacts.set_stage(
        people.agent, contact.id, (await contacts.stage_by_name("MQL")).id
    )
    clock.advance(minutes=4)
    await contacts.undo_move(people.agent, contact.id, expected_version=moved.contact.version)
    card = await contacts.get(people.agent, contact.id)
    assert card.contact.stage_entered_at == contact.stage_entered_at  # 3 days in Lead, not 0


@pytest.mark.parametrize("who", ["teammate", "manager"])
async def test_only_the_person_who_moved_a_lead_may_undo_it(
    contacts: ContactService, people: People, who: str
) -> None:
    contact_id, version = await _moved_to_mql(contacts, people)
    with pytest.raises((NothingToUndo, AccessDenied)):
        await contacts.undo_move(getattr(people, who), contact_id, expected_version=version)


async def test_an_undo_is_refused_when_late_or_when_the_lead_changed_since(
    contacts: ContactService, people: People, clock: Clock
) -> None:
    contact_id, version = await _moved_to_mql(contacts, people)
    with pytest.raises(NothingToUndo):  # a version the move did not leave
        await contacts.undo_move(people.agent, contact_id, expected_version=version - 1)
    clock.advance(minutes=6)
    with pytest.raises(NothingToUndo, match="too late"):
        await contacts.undo_move(people.agent, contact_id, expected_version=version)
    history = await contacts.history(people.agent, contact_id)
    assert [c.source.value for c in history] == ["manual", "manual"]


async def test_the_stage_a_lead_was_created_in_is_no_move_to_undo(
    contacts: ContactService, people: People
) -> None:
    contact = await contacts.add(people.agent, ContactDraft(name="Hà", stage="Lead"))
    assert contact.id is not None
    with pytest.raises(NothingToUndo):
        await contacts.undo_move(people.agent, contact.id, expected_version=contact.version)
