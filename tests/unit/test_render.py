"""Cards and buttons always fit Telegram's limits, whatever people typed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from aiogram.utils.i18n import gettext

from domain.model import (
    Activity,
    ActivityKind,
    Category,
    Contact,
    EventKind,
    Outcome,
    ReceivedEvent,
    Role,
    Source,
    Stage,
    StageChange,
    TimelineEntry,
    User,
)
from domain.services.contacts import ContactCard, ContactDetails
from handlers import render
from handlers.i18n import build_i18n

NOW = datetime(2026, 5, 1, 9, tzinfo=UTC)
I18N = build_i18n()


def huge_card() -> ContactCard:
    long_text = "Nguyễn <b>&" * 400
    contact = Contact(
        7,
        long_text[:200],
        phone="+84912345678",
        email="a@b.vn",
        source=long_text[:100],
        tags=[f"tag {n} {long_text[:50]}" for n in range(40)],
        custom_fields={f"field {n}": long_text for n in range(30)},
        stage_entered_at=NOW - timedelta(days=3),
        version=12345,
    )
    stage = Stage(999_999, "S" * 64, Category.OPEN, 1)
    owner = User(5, "O" * 100, Role.AGENT)
    tasks = [
        Activity(n, 7, ActivityKind.TASK, long_text, at=NOW, due_at=NOW + timedelta(days=n))
        for n in range(20)
    ]
    entries = [TimelineEntry(NOW, "note", long_text, 5) for _ in range(20)]
    return ContactCard(ContactDetails(contact, stage, long_text[:200], owner), tasks, entries, 20)


def test_a_card_with_everything_too_long_still_fits_in_one_message() -> None:
    card = huge_card()
    with I18N.context(), I18N.use_locale("vi"):
        text = render.card_text(
            card,
            {5: User(5, "O" * 100, Role.AGENT)},
            zone=ZoneInfo("Asia/Ho_Chi_Minh"),
            now=NOW,
            language="vi",
        )
    assert len(text) <= render.MESSAGE_LIMIT
    assert "<b>&" not in text  # what people typed is escaped
    assert gettext  # the catalog was in use


def test_every_button_of_a_card_fits_64_bytes_of_callback_data() -> None:
    with I18N.context(), I18N.use_locale("en"):
        keyboard = render.card_keyboard(card := huge_card(), User(1, "Boss", Role.ADMIN))
        card.details.contact.company_id = 2**31
        keyboard = render.card_keyboard(card, User(1, "Boss", Role.ADMIN))
    for row in keyboard.inline_keyboard:
        for key in row:
            assert key.callback_data is not None
            assert len(key.callback_data.encode()) <= 64


def automation_card() -> ContactCard:
    contact = Contact(7, "An", stage_entered_at=NOW)
    lost = Stage(3, "Disqualified", Category.LOST, 1)
    declined = ReceivedEvent(
        9,
        EventKind.REVENUE_BOOKED,
        7,
        NOW,
        "books",
        Outcome.DECLINED,
        "f",
        detail="The contact is lost (Disqualified); automation never moves it.",
    )
    moved = StageChange(7, None, 3, NOW, None, Source.AUTOMATION, "disqualified", id=1)
    entries = [
        TimelineEntry(NOW, "event", declined.kind, None, event=declined),
        TimelineEntry(NOW, "stage", "— → Disqualified", None, stage_change=moved),
    ]
    return ContactCard(ContactDetails(contact, lost, None, None), [], entries, 2)


def card_in(language: str) -> str:
    with I18N.context(), I18N.use_locale(language):
        return render.card_text(
            automation_card(), {}, zone=ZoneInfo("UTC"), now=NOW, language=language
        )


def test_what_automation_did_and_declined_is_on_the_card_marked_as_automation() -> None:
    text = card_in("en")
    assert (
        "<i>Event</i> revenue_booked: declined — The contact is lost (Disqualified); automation "
        "never moves it. — 🤖 automation" in text
    )
    assert "<i>Stage</i> — → Disqualified (disqualified) — 🤖 automation" in text


def test_a_declined_event_is_explained_in_the_readers_language() -> None:
    text = card_in("vi")
    assert "bị từ chối — Quy tắc tự động không chuyển khách hàng tiềm năng này." in text
    assert "🤖 tự động" in text
