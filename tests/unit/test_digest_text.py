"""The manager's morning digest as people read it: only the sections they chose, a short note
on a quiet day, their language, and a chart only when there is something to draw."""

from __future__ import annotations

from datetime import date

from domain.model import Category, Contact, DigestSection, Role, Stage, User
from domain.reports import Funnel, FunnelStep, LeaderRow, LostAt, Period, Summary
from domain.services.contacts import ContactDetails
from domain.services.digests import MorningDigest
from handlers.callbacks import CardCb
from handlers.digest import DIGEST_IDLE_SHOWN, Composed, render_digest
from handlers.i18n import build_i18n

I18N = build_i18n()
YESTERDAY = Period(date(2026, 3, 1), date(2026, 3, 1))
MANAGER = User(1, "Mai", Role.MANAGER, team="north")
LEAD = Stage(1, "Lead", Category.OPEN, 1)
LAN = User(2, "Lan", Role.AGENT)


def summary(new: int = 0, moves: int = 0, converted: int = 0, lost: int = 0) -> Summary:
    return Summary(YESTERDAY, new, moves, converted, lost, won_stage_defined=True)


def idle(count: int) -> list[ContactDetails]:
    return [
        ContactDetails(Contact(100 + n, f"Idle {n}", owner_id=2), LEAD, None, LAN)
        for n in range(count)
    ]


def funnel() -> Funnel:
    month = Period(date(2026, 1, 31), date(2026, 3, 1))
    steps = (FunnelStep(1, "Lead", 9, 1.0, 1.0), FunnelStep(None, "Won", 2, 2 / 9, 2 / 9))
    return Funnel(month, 9, steps, (LostAt(1, "Lead", 3),), won_stage_defined=True)


def digest(
    figures: Summary,
    sections: frozenset[DigestSection] = frozenset(DigestSection),
    *,
    top: tuple[LeaderRow, ...] = (),
    idle_leads: list[ContactDetails] | None = None,
    chart: bool = False,
) -> MorningDigest:
    return MorningDigest(sections, figures, top, idle_leads or [], funnel() if chart else None)


def read(d: MorningDigest, language: str = "en", reader: User = MANAGER) -> tuple[str, Composed]:
    with I18N.context(), I18N.use_locale(language):
        composed = render_digest(d, reader)
    return composed.text, composed


def test_only_the_chosen_sections_are_shown() -> None:
    chosen = frozenset({DigestSection.NEW, DigestSection.CONVERTED})
    text, _ = read(digest(summary(new=4, moves=7, converted=2, lost=1), chosen))
    assert "New leads: <b>4</b>" in text
    assert "Converted: <b>2</b>" in text
    assert "Stage moves" not in text
    assert "Lost" not in text
    assert "idle" not in text


def test_every_figure_of_the_day_and_the_top_agents_in_order() -> None:
    top = (
        LeaderRow(2, "Lan <3", 5, 2, 0, 1.0, None, None),
        LeaderRow(3, "Otto", 1, 0, 1, 0.0, None, None),
    )
    text, _ = read(digest(summary(new=4, moves=7, converted=2, lost=1), top=top))
    assert "(01/03)" in text
    for line in ("New leads: <b>4</b>", "Stage moves: <b>7</b>", "Lost: <b>1</b>"):
        assert line in text
    assert text.index("1. Lan &lt;3: 2 won, 5 new") < text.index("2. Otto: 0 won, 1 new")


def test_a_quiet_day_still_gets_a_short_message_without_a_chart() -> None:
    text, composed = read(digest(summary()))
    assert "A quiet day" in text
    assert "New leads" not in text
    assert composed.chart is None
    assert len(text.splitlines()) <= 3


def test_idle_leads_come_as_card_buttons_capped_with_a_pointer_to_idle() -> None:
    text, composed = read(digest(summary(moves=1), idle_leads=idle(DIGEST_IDLE_SHOWN + 1)))
    keyboard = composed.keyboard
    assert keyboard is not None
    buttons = [key for row in keyboard.inline_keyboard for key in row]
    assert len(buttons) == DIGEST_IDLE_SHOWN
    assert buttons[0].callback_data == CardCb(id=100).pack()
    assert "Idle 0 · Lead · Lan" in buttons[0].text
    assert "/idle shows them all" in text


def test_no_idle_lead_is_said_plainly_and_gives_no_keyboard() -> None:
    text, composed = read(digest(summary(new=1)))
    assert "No lead is idle too long" in text
    assert composed.keyboard is None


def test_the_chart_is_a_png_when_chosen() -> None:
    _, composed = read(digest(summary(new=3), chart=True))
    assert composed.chart is not None
    assert composed.chart.startswith(b"\x89PNG")


def test_an_admin_reads_about_all_teams() -> None:
    text, _ = read(digest(summary(new=1)), reader=User(9, "Ada", Role.ADMIN))
    assert "across all teams" in text


def test_vietnamese() -> None:
    text, _ = read(digest(summary(new=4, moves=7, converted=2, lost=1)), "vi")
    assert "Chào buổi sáng" in text
    assert "Khách mới: <b>4</b>" in text
    assert "Chuyển giai đoạn: <b>7</b>" in text
    quiet, _ = read(digest(summary()), "vi")
    assert "Một ngày yên ắng" in quiet


def test_chinese() -> None:
    text, _ = read(digest(summary(new=4, lost=1)), "zh")
    assert "新线索：<b>4</b>" in text
    assert "已丢失：<b>1</b>" in text
