"""Demo data for `stagekeeper sandbox --demo`: a small Vietnamese sales organisation and about
three hundred contacts with ninety days of history, made through the domain services so that
every rule applies exactly as in real use (duplicates, owners and scopes, lost reasons,
reopening by managers). Nothing here writes SQL.

The people, and the Telegram ids to log in as in the sandbox:

    Telegram id  Name              Role     Team
    1001         Đặng Quốc Bảo     admin    —
    1002         Trần Minh Khoa    manager  Hà Nội
    1003         Lê Thị Thu Hà     manager  Sài Gòn
    1004         Nguyễn Thị Mai    agent    Hà Nội
    1005         Phạm Văn Hùng     agent    Hà Nội
    1006         Emily Carter      agent    Hà Nội
    1007         Võ Thanh Tâm      agent    Sài Gòn
    1008         Hoàng Anh Tuấn    agent    Sài Gòn
    1009         David Miller      agent    Sài Gòn
    —            Bùi Ngọc Lan      agent    Sài Gòn   (an owner not yet linked to Telegram)

The stages are the `amis` template. Two contacts are fixed, for tests and demonstrations:
"Nguyễn Văn An" (+84 912 345 678, Công ty TNHH Minh Phát; SQL, owned by Nguyễn Thị Mai, with a
follow-up task due after `now`) and "Trần Thị Bích" (Tập đoàn Đại Việt; Loyal customer, owned by
Võ Thanh Tâm). Everything else comes from `random.Random(seed)` and `now` alone: the same seed
and the same `now` give the same data, contact ids included.

How: the services are built here from the organisation's settings (policy, phone region, time
zone) around a clock that the loader sets to each event's moment, walking through the ninety
days: a contact is created, moved and written about at the time it happened, not backdated.
They share one session, and the load commits once: a load that fails leaves nothing behind.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Self, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.container import Services
from domain.access import SYSTEM
from domain.errors import InvalidInput
from domain.model import ActivityKind, Category, Role, Source, User
from domain.ports import UnitOfWork
from domain.services.contacts import CLOCK_SKEW, ContactDraft, ContactService
from domain.services.stages import StageService
from domain.services.users import UserService
from domain.stages import TEMPLATES
from domain.text import fold, words
from storage.db import make_sessionmaker
from storage.uow import SharedSessionUnitOfWork

DEMO_ADMIN_ID = 1001
DEMO_CONTACTS = 300
DEMO_DAYS = 90
TEMPLATE = "amis"

HA_NOI = "Hà Nội"
SAI_GON = "Sài Gòn"


@dataclass(frozen=True, slots=True)
class DemoPerson:
    name: str
    role: Role
    team: str | None
    telegram_id: int | None


PEOPLE: tuple[DemoPerson, ...] = (
    DemoPerson("Đặng Quốc Bảo", Role.ADMIN, None, DEMO_ADMIN_ID),
    DemoPerson("Trần Minh Khoa", Role.MANAGER, HA_NOI, 1002),
    DemoPerson("Lê Thị Thu Hà", Role.MANAGER, SAI_GON, 1003),
    DemoPerson("Nguyễn Thị Mai", Role.AGENT, HA_NOI, 1004),
    DemoPerson("Phạm Văn Hùng", Role.AGENT, HA_NOI, 1005),
    DemoPerson("Emily Carter", Role.AGENT, HA_NOI, 1006),
    DemoPerson("Võ Thanh Tâm", Role.AGENT, SAI_GON, 1007),
    DemoPerson("Hoàng Anh Tuấn", Role.AGENT, SAI_GON, 1008),
    DemoPerson("David Miller", Role.AGENT, SAI_GON, 1009),
    DemoPerson("Bùi Ngọc Lan", Role.AGENT, SAI_GON, None),
)


@dataclass(frozen=True, slots=True)
class DemoStageCount:
    name: str
    category: Category
    contacts: int


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What load_demo made: enough for a "log in as …" table."""

    people: tuple[DemoPerson, ...]
    contacts: int
    stages: tuple[DemoStageCount, ...]  # in display order
    without_stage: int
    stage_changes: int
    activities: int
    now: datetime

    @property
    def admin(self) -> DemoPerson:
        return next(p for p in self.people if p.telegram_id == DEMO_ADMIN_ID)

    def describe(self) -> str:
        """The people to log in as and the contacts per stage, as plain text."""
        width = max(len(p.name) for p in self.people)
        lines = [f"{'Telegram id':<12} {'Name':<{width}}  {'Role':<8} Team"]
        for person in self.people:
            tid = str(person.telegram_id) if person.telegram_id is not None else "—"
            line = f"{tid:<12} {person.name:<{width}}  {person.role.value:<8} {person.team or '—'}"
            if person.telegram_id is None:
                line += "  (not linked to Telegram)"
            lines.append(line.rstrip())
        stages = ", ".join(f"{s.name} {s.contacts}" for s in self.stages)
        if self.without_stage:
            stages += f", no stage {self.without_stage}"
        lines.append(
            f"{self.contacts} contacts ({stages}); {self.stage_changes} stage changes and "
            f"{self.activities} activities over the {DEMO_DAYS} days before {self.now:%Y-%m-%d}."
        )
        return "\n".join(lines)


async def load_demo(
    services: Services, *, now: datetime | None = None, seed: int = 7
) -> DemoSummary:
    """Fill an empty database with the demo organisation, in one transaction. Refused
    (InvalidInput, nothing written) when the database already has contacts, stages other than
    the `amis` template, or other people on the demo's Telegram ids."""
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None:
        raise InvalidInput("The demo's `now` must carry a time zone.")
    if now > datetime.now(UTC) + CLOCK_SKEW:
        raise InvalidInput("The demo's `now` cannot lie in the future.")
    now = now.astimezone(UTC)
    settings = services.settings
    async with _OneTransaction(services.engine) as transaction:
        clock = _Clock(now)
        stages = StageService(transaction.uow, settings.policy, clock=clock)
        contacts = ContactService(
            transaction.uow,
            default_region=settings.default_phone_region,
            policy=settings.policy,
            clock=clock,
        )
        users = UserService(transaction.uow)
        summary = await _load(stages, contacts, users, clock, settings.zone, seed)
        await transaction.commit()
    return summary


async def _load(
    stages: StageService,
    contacts: ContactService,
    people: UserService,
    clock: _Clock,
    zone: ZoneInfo,
    seed: int,
) -> DemoSummary:
    now = clock.at
    await _check_empty(stages)
    await _check_stages(stages)
    users = await _existing_people(people)
    for person in PEOPLE:
        if person not in users:
            users[person] = await people.add(
                SYSTEM, person.name, person.role, team=person.team, telegram_id=person.telegram_id
            )
    await stages.apply_template(users[ADMIN], TEMPLATE)
    stage_ids = {s.stage.name: s.stage.id for s in await stages.summaries()}

    plans = _Planner(random.Random(seed), now, zone, _national_format_ok(contacts)).plans()
    changes = activities = 0
    for plan in plans:
        if plan.creator != plan.owner:
            plan.draft.owner = _owner_ref(plan.owner)
        clock.at = plan.created_at
        contact = await contacts.add(users[plan.creator], plan.draft, source=plan.source)
        assert contact.id is not None
        changes += plan.draft.stage is not None
        for event in plan.events:
            clock.at = event.at
            actor = users[event.by]
            if isinstance(event, _Move):
                await contacts.set_stage(
                    actor, contact.id, stage_ids[event.stage], reason=event.reason
                )
                changes += 1
            else:
                await contacts.log_activity(
                    actor, contact.id, event.kind, event.text, due_at=event.due_at
                )
                activities += 1
    clock.at = now

    summaries = await stages.summaries()
    return DemoSummary(
        people=tuple(
            DemoPerson(u.name, u.role, u.team, u.telegram_id) for u in (users[p] for p in PEOPLE)
        ),
        contacts=len(plans),
        stages=tuple(DemoStageCount(s.stage.name, s.stage.category, s.contacts) for s in summaries),
        without_stage=await stages.contacts_without_stage(),
        stage_changes=changes,
        activities=activities,
        now=now,
    )


class _OneTransaction:
    """The demo's unit-of-work factory: every use case runs on one session and its commit only
    flushes; the whole load commits once at the end, so that a load that fails half way leaves
    nothing behind (and SQLite is spared ~850 BEGIN IMMEDIATE/COMMIT pairs). The rules are the
    services' own, applied exactly as in real use."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._session = make_sessionmaker(engine)()

    async def __aenter__(self) -> Self:
        self._shared = SharedSessionUnitOfWork(self._session)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._session.rollback()  # after commit(): nothing left to roll back
        await self._session.close()

    def uow(self, *, bulk: bool = False, read_only: bool = False) -> UnitOfWork:
        return self._shared

    async def commit(self) -> None:
        await self._session.commit()


# --- checks before anything is written ---------------------------------------------------


async def _check_empty(stages: StageService) -> None:
    held = sum(s.contacts for s in await stages.summaries())
    held += await stages.contacts_without_stage()
    if held:
        raise InvalidInput(
            f"The database already has {held} contact(s); load the demo into an empty database "
            "(e.g. a new sandbox file)."
        )


async def _check_stages(stages: StageService) -> None:
    present = {fold(s.stage.name): s.stage.category for s in await stages.summaries()}
    if not present:
        return
    wanted = {fold(name): category for name, category in TEMPLATES[TEMPLATE]}
    if any(present.get(name) is not category for name, category in wanted.items()):
        raise InvalidInput(
            f"The demo needs the {TEMPLATE!r} stages, and this database has other stages; "
            "load the demo into an empty database."
        )


async def _existing_people(people: UserService) -> dict[DemoPerson, User]:
    """Demo people already present (e.g. the admin from ADMIN_IDS) are reused; anyone else on
    a demo Telegram id is refused."""
    users = await people.everyone()
    found: dict[DemoPerson, User] = {}
    for person in PEOPLE:
        if person.telegram_id is not None:
            user = next((u for u in users if u.telegram_id == person.telegram_id), None)
        else:
            user = next((u for u in users if fold(u.name) == fold(person.name)), None)
        if user is None:
            continue
        if user.role is not person.role or user.team != person.team:
            who = person.telegram_id if person.telegram_id is not None else person.name
            raise InvalidInput(
                f"{user.name} ({user.role.value}) already exists where the demo needs "
                f"{person.name} ({person.role.value}, {who}); load the demo into an empty "
                "database."
            )
        found[person] = user
    return found


def _national_format_ok(contacts: ContactService) -> bool:
    """Whether "0912 345 678" reads as a Vietnamese number here (default phone region VN);
    elsewhere the demo writes every number in the international format."""
    criteria = contacts.criteria("0912 345 678")
    return criteria is not None and criteria.phone == "+84912345678"


def _owner_ref(person: DemoPerson) -> str:
    return str(person.telegram_id) if person.telegram_id is not None else person.name


class _Clock:
    """The time activities are logged at, set before each one."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


# --- the plan: pure, from the seed and `now` ----------------------------------------------

ADMIN, KHOA, THU_HA, MAI, HUNG, EMILY, TAM, TUAN, DAVID, LAN = PEOPLE
MANAGER_OF = {HA_NOI: KHOA, SAI_GON: THU_HA}
AGENTS = (MAI, HUNG, EMILY, TAM, TUAN, DAVID)
AGENT_WEIGHTS = (12, 10, 8, 12, 10, 8)
ENGLISH_SPEAKERS = {EMILY, DAVID}


@dataclass(slots=True)
class _Move:
    at: datetime
    stage: str
    by: DemoPerson
    reason: str | None = None


@dataclass(slots=True)
class _Activity:
    at: datetime
    kind: ActivityKind
    text: str
    by: DemoPerson
    due_at: datetime | None = None


@dataclass(slots=True)
class _Plan:
    draft: ContactDraft
    owner: DemoPerson
    creator: DemoPerson
    source: Source = Source.MANUAL
    events: list[_Move | _Activity] = field(default_factory=list)

    @property
    def created_at(self) -> datetime:
        assert self.draft.created_at is not None
        return self.draft.created_at


FAMILY = (
    ("Nguyễn", 30), ("Trần", 12), ("Lê", 10), ("Phạm", 8), ("Hoàng", 5), ("Huỳnh", 4),
    ("Phan", 4), ("Vũ", 4), ("Võ", 4), ("Đặng", 3), ("Bùi", 3), ("Đỗ", 3), ("Hồ", 2),
    ("Ngô", 2), ("Dương", 2), ("Lý", 1), ("Trương", 1), ("Đinh", 1),
)  # fmt: skip
MIDDLE_MALE = ("Văn", "Văn", "Hữu", "Đức", "Minh", "Quốc", "Thanh", "Công", "Gia", "Xuân")
MIDDLE_FEMALE = ("Thị", "Thị", "Thị", "Ngọc", "Thu", "Thanh", "Minh", "Kim", "Bảo", "Mỹ")
GIVEN_MALE = (
    "An", "Bình", "Cường", "Dũng", "Duy", "Hải", "Hiếu", "Hoàng", "Hùng", "Huy", "Khang",
    "Khoa", "Kiên", "Long", "Lộc", "Nam", "Nghĩa", "Phong", "Phúc", "Quân", "Quang", "Sơn",
    "Tài", "Thắng", "Thành", "Tiến", "Toàn", "Trí", "Trung", "Tuấn", "Việt", "Vinh",
)  # fmt: skip
GIVEN_FEMALE = (
    "Anh", "Châu", "Chi", "Dung", "Giang", "Hà", "Hạnh", "Hằng", "Hoa", "Hương", "Huyền",
    "Lan", "Liên", "Linh", "Loan", "Mai", "My", "Nga", "Ngân", "Nhung", "Oanh", "Phương",
    "Quyên", "Tâm", "Thảo", "Thủy", "Trang", "Trinh", "Uyên", "Vân", "Vy", "Yến",
)  # fmt: skip
ENGLISH_FIRST = (
    "James", "Michael", "Daniel", "Thomas", "Peter", "Mark", "Sarah", "Laura", "Jessica",
    "Rachel", "Sophie", "Olivia", "Kevin", "Jennifer",
)  # fmt: skip
ENGLISH_LAST = (
    "Smith", "Johnson", "Brown", "Wilson", "Taylor", "Clarke", "Walker", "Wright", "Harris",
    "Lewis", "Robinson", "Hughes", "Kim", "Tan", "Lim",
)  # fmt: skip

COMPANIES = (
    ("Công ty TNHH Minh Phát", "minhphat.vn"),
    ("Tập đoàn Đại Việt", "daiviet.com.vn"),
    ("Công ty CP Thép Hòa Bình", "thephoabinh.vn"),
    ("Công ty TNHH Thương mại Hưng Thịnh", "hungthinh.com.vn"),
    ("Công ty CP Dược phẩm Sao Mai", "saomaipharma.vn"),
    ("Công ty TNHH Nội thất Gia Huy", "noithatgiahuy.vn"),
    ("Công ty CP Xây dựng Trường Sơn", "truongsoncons.vn"),
    ("Công ty TNHH Du lịch Biển Xanh", "bienxanhtravel.vn"),
    ("Công ty CP Thực phẩm Bình Minh", "binhminhfood.vn"),
    ("Công ty TNHH Logistics Đông Á", "dongalogistics.vn"),
    ("Công ty CP Giáo dục Tuệ Đức", "tueduc.edu.vn"),
    ("Công ty TNHH May mặc Hoa Sen", "hoasengarment.vn"),
    ("Nhà hàng Phố Cổ", "nhahangphoco.vn"),
    ("Phòng khám Nha khoa Ngọc Trâm", "nhakhoangoctram.vn"),
    ("Saigon Coffee Roasters", "saigoncoffee.co"),
    ("Mekong Freight Ltd", "mekongfreight.com"),
    ("Pacific Garment Co.", "pacificgarment.com"),
    ("Lotus Dental Clinic", "lotusdental.vn"),
)
SOURCES = (
    ("Facebook", 25), ("Zalo", 20), ("Website", 16), ("Referral", 12), ("Google Ads", 10),
    ("Trade show", 9), ("Cold call", 8),
)  # fmt: skip
# The status column of the old spreadsheet, imported as the stage (None: no status).
IMPORTED_STAGES = (
    ("Lead", 40), ("MQL", 20), ("SQL", 15), ("Customer", 10), ("Disqualified", 10), (None, 5),
)  # fmt: skip
FORM_SOURCES = {"Website", "Google Ads"}  # web forms qualify leads a little: they start at MQL
TAGS = ("VIP", "Khách sỉ", "Cần gọi lại", "Gói Pro", "Đối tác", "Khách lẻ")
TRADE_SHOW_TAG = "Hội chợ Vietbuild"
MOBILE_PREFIXES = (
    "090", "091", "093", "096", "097", "098", "032", "033", "034", "035", "036", "037",
    "038", "039", "070", "076", "077", "078", "079", "081", "082", "083", "084", "085",
    "086", "088",
)  # fmt: skip
EMAIL_DOMAINS = ("gmail.com", "gmail.com", "gmail.com", "yahoo.com", "outlook.com")

# Lost reasons: the default list's spellings (a list configured otherwise records them as a
# described "Other"), and a few described reasons of their own.
DISQUALIFIED_REASONS = (
    ("Price", 25), ("Competitor", 20), ("No budget", 14), ("Not a fit", 12),
    ("Khách đã chọn nhà cung cấp cũ", 4), ("Dự án bị hoãn sang năm sau", 4),
    ("Company went with an in-house tool", 2),
)  # fmt: skip
UNSUBSCRIBED_REASONS = (
    ("No response", 30), ("Khách yêu cầu không liên hệ nữa", 5), ("Wrong number", 2),
)  # fmt: skip
REOPEN_REASONS = (
    ("Khách liên hệ lại, đã có ngân sách mới", 3),
    ("Khách gọi lại sau khi dùng thử bên đối thủ", 2),
    ("Được đối tác giới thiệu lại", 1),
    ("Customer came back with a new budget", 2),
    ("New decision maker, worth another try", 1),
)
UNWIN_REASONS = (
    ("Khách hủy hợp đồng, cần đàm phán lại", 1),
    ("Contract cancelled before payment; renegotiating", 1),
)


@dataclass(frozen=True, slots=True)
class _Step:
    chance: float
    target: str
    days: tuple[int, int]  # how long after the previous step, in days
    reasons: tuple[tuple[str, int], ...] = ()  # weighted; lost moves and reopening need one
    reopens: bool = False  # out of won or lost: a manager's move


# The walk through the `amis` stages: from each stage, the chance of each next step (the rest
# of the time the contact stays). Skips: Lead → SQL, MQL → Customer.
WALK: dict[str | None, tuple[_Step, ...]] = {
    None: (_Step(0.5, "Lead", (1, 10)),),
    "Lead": (
        _Step(0.45, "MQL", (1, 5)),
        _Step(0.12, "SQL", (2, 8)),
        _Step(0.09, "Unsubscribed", (5, 20), UNSUBSCRIBED_REASONS),
        _Step(0.08, "Disqualified", (2, 10), DISQUALIFIED_REASONS),
    ),
    "MQL": (
        _Step(0.50, "SQL", (2, 10)),
        _Step(0.06, "Customer", (5, 15)),
        _Step(0.12, "Disqualified", (3, 15), DISQUALIFIED_REASONS),
        _Step(0.06, "Unsubscribed", (5, 20), UNSUBSCRIBED_REASONS),
    ),
    "SQL": (
        _Step(0.50, "Customer", (3, 18)),
        _Step(0.28, "Disqualified", (3, 18), DISQUALIFIED_REASONS),
    ),
    "Customer": (
        _Step(0.25, "Loyal customer", (10, 35)),
        _Step(0.03, "SQL", (5, 20), UNWIN_REASONS, reopens=True),
    ),
    "Loyal customer": (),
    "Unsubscribed": (
        _Step(0.06, "MQL", (5, 25), REOPEN_REASONS, reopens=True),
        _Step(0.06, "SQL", (5, 25), REOPEN_REASONS, reopens=True),
    ),
    "Disqualified": (
        _Step(0.06, "MQL", (5, 25), REOPEN_REASONS, reopens=True),
        _Step(0.06, "SQL", (5, 25), REOPEN_REASONS, reopens=True),
    ),
}

NOTES: dict[ActivityKind, dict[str, tuple[str, ...]]] = {
    ActivityKind.CALL: {
        "vi": (
            "Gọi tư vấn lần đầu, khách quan tâm gói Pro.",
            "Khách bận, hẹn gọi lại chiều mai.",
            "Đã gọi, khách muốn xem báo giá chi tiết.",
            "Gọi xác nhận nhu cầu: 5 người dùng, triển khai tháng tới.",
            "Không bắt máy, đã nhắn Zalo.",
            "Khách hỏi về chính sách chiết khấu cho hợp đồng năm.",
        ),
        "en": (
            "First call: interested in the Pro plan.",
            "Busy, asked to call back tomorrow afternoon.",
            "Called; wants a detailed quote.",
            "Confirmed needs: 5 seats, rollout next month.",
            "No answer, left a voicemail.",
        ),
    },
    ActivityKind.NOTE: {
        "vi": (
            "Khách đang so sánh với bên đối thủ, cần nhấn mạnh dịch vụ hỗ trợ.",
            "Giám đốc là người quyết định cuối cùng, cần gặp trực tiếp.",
            "Khách hỏi về bảo hành và thanh toán trả góp.",
            "Đã gửi tài liệu giới thiệu qua Zalo.",
            "Khách thích giao diện tiếng Việt, lo ngại về chi phí triển khai.",
        ),
        "en": (
            "Comparing us with a competitor; stress our support.",
            "The director decides; we need a face-to-face meeting.",
            "Asked about warranty and instalment payments.",
            "Sent the brochure over email.",
        ),
    },
    ActivityKind.EMAIL: {
        "vi": (
            "Gửi báo giá và hợp đồng mẫu.",
            "Gửi email cảm ơn sau buổi gặp.",
            "Gửi tài liệu hướng dẫn sử dụng.",
        ),
        "en": (
            "Sent the quote and a draft contract.",
            "Thank-you email after the meeting.",
            "Sent the onboarding guide.",
        ),
    },
    ActivityKind.MEETING: {
        "vi": (
            "Gặp khách tại văn phòng, demo sản phẩm 45 phút.",
            "Họp online qua Google Meet với phòng kế toán.",
            "Cà phê với khách, trao đổi về nhu cầu mở rộng chi nhánh.",
        ),
        "en": (
            "On-site demo at their office, 45 minutes.",
            "Video call with their finance team.",
            "Coffee meeting about opening a second branch.",
        ),
    },
    ActivityKind.TASK: {
        "vi": (
            "Gửi báo giá cập nhật",
            "Gọi lại xác nhận lịch demo",
            "Chuẩn bị hợp đồng",
            "Nhắc khách thanh toán đợt 1",
        ),
        "en": (
            "Send the updated quote",
            "Call back to confirm the demo",
            "Prepare the contract",
            "Remind them of the first payment",
        ),
    },
}
ACTIVITY_KINDS = (
    (ActivityKind.CALL, 35), (ActivityKind.NOTE, 25), (ActivityKind.EMAIL, 12),
    (ActivityKind.MEETING, 10), (ActivityKind.TASK, 18),
)  # fmt: skip
T = TypeVar("T")
# By the stage a contact ends in: how many activities it had (weighted), and the chance of a
# recent follow-up task. The busiest are the qualified leads.
ACTIVITIES: dict[str | None, tuple[tuple[tuple[int, int], ...], float]] = {
    None: (((0, 80), (1, 20)), 0.0),
    "Lead": (((0, 70), (1, 30)), 0.10),
    "MQL": (((0, 40), (1, 45), (2, 15)), 0.35),
    "SQL": (((0, 10), (1, 50), (2, 30), (3, 10)), 0.40),
    "Customer": (((0, 50), (1, 40), (2, 10)), 0.0),
    "Loyal customer": (((0, 50), (1, 40), (2, 10)), 0.0),
    "Unsubscribed": (((0, 75), (1, 25)), 0.0),
    "Disqualified": (((0, 75), (1, 25)), 0.0),
}
AN = "Nguyễn Văn An"
BICH = "Trần Thị Bích"


def _pick(rng: random.Random, weighted: Sequence[tuple[T, int]]) -> T:
    return rng.choices([item for item, _ in weighted], [w for _, w in weighted])[0]


class _Planner:
    """Draws the contacts and their histories. Pure: the same seed and `now` give the same
    plans, in the order of creation."""

    def __init__(self, rng: random.Random, now: datetime, zone: ZoneInfo, national: bool) -> None:
        self.rng = rng
        self.now = now
        self.zone = zone
        self.today = now.astimezone(zone).date()
        self.national = national
        self.names = {fold(AN), fold(BICH)}
        self.phones = {"912345678", "987654321"}
        self.emails = {"an.nguyen@minhphat.vn", "bich.tran@daiviet.com.vn"}

    def plans(self) -> list[_Plan]:
        plans = [self._an(), self._bich()]
        imported = self.rng.randint(12, 16)
        import_day = self.today - timedelta(days=self.rng.randint(40, 50))
        start = self._at(import_day, 9 * 60 + 30)
        for n in range(imported):
            plans.append(self._imported(start + timedelta(minutes=n)))
        while len(plans) < DEMO_CONTACTS:
            plans.append(self._random())
        plans.sort(key=lambda p: p.created_at)
        return plans

    # The two contacts every demonstration can rely on.

    def _an(self) -> _Plan:
        created = self._at(self.today - timedelta(days=24), 9 * 60 + 15)
        draft = ContactDraft(
            name=AN,
            phone=self._written("912345678", style=1),
            email="an.nguyen@minhphat.vn",
            company="Công ty TNHH Minh Phát",
            source="Zalo",
            stage="Lead",
            value="150,000,000",
            tags=["VIP"],
            created_at=created,
        )
        plan = _Plan(draft, MAI, MAI)
        day = timedelta(days=1)
        plan.events = [
            _Activity(
                created + timedelta(hours=1),
                ActivityKind.CALL,
                NOTES[ActivityKind.CALL]["vi"][0],
                MAI,
            ),
            _Move(created + 3 * day, "MQL", MAI),
            _Activity(
                created + 3 * day + timedelta(hours=2),
                ActivityKind.EMAIL,
                "Gửi báo giá và hợp đồng mẫu.",
                MAI,
            ),
            _Activity(
                created + 9 * day,
                ActivityKind.MEETING,
                "Gặp anh An tại văn phòng Minh Phát, demo 45 phút.",
                MAI,
            ),
            _Move(created + 9 * day + timedelta(hours=3), "SQL", MAI),
            _Activity(
                (self.now - timedelta(hours=20)).replace(second=0, microsecond=0),
                ActivityKind.TASK,
                "Gọi lại anh An chốt hợp đồng",
                MAI,
                due_at=self._at(self.today + timedelta(days=2), 10 * 60),
            ),
        ]
        return plan

    def _bich(self) -> _Plan:
        created = self._at(self.today - timedelta(days=62), 14 * 60 + 40)
        draft = ContactDraft(
            name=BICH,
            phone=self._written("987654321", style=2),
            email="bich.tran@daiviet.com.vn",
            company="Tập đoàn Đại Việt",
            source="Referral",
            stage="Lead",
            value="320000000",
            tags=["VIP", "Đối tác"],
            created_at=created,
        )
        plan = _Plan(draft, TAM, THU_HA)
        day = timedelta(days=1)
        plan.events = [
            _Activity(created + 2 * day, ActivityKind.CALL, "Gọi chị Bích, hẹn gặp tuần sau.", TAM),
            _Move(created + 6 * day, "SQL", TAM),
            _Activity(
                created + 8 * day,
                ActivityKind.MEETING,
                "Họp với chị Bích và phòng mua hàng Đại Việt.",
                TAM,
            ),
            _Move(created + 20 * day, "Customer", TAM),
            _Activity(
                created + 21 * day,
                ActivityKind.EMAIL,
                "Gửi email cảm ơn và hướng dẫn sử dụng.",
                TAM,
            ),
            _Move(created + 52 * day, "Loyal customer", THU_HA),
        ]
        return plan

    # Contacts of the owner not yet on Telegram: imported by the admin from an old spreadsheet.

    def _imported(self, created: datetime) -> _Plan:
        draft = self._draft(created, self.rng.choice(("Cold call", "Trade show")), english=False)
        draft.stage = _pick(self.rng, IMPORTED_STAGES)
        if draft.stage == "Disqualified":
            draft.lost_reason = _pick(self.rng, DISQUALIFIED_REASONS)
        plan = _Plan(draft, LAN, ADMIN, Source.IMPORT)
        self._history(plan, english=False)
        return plan

    def _random(self) -> _Plan:
        rng = self.rng
        created = self._created_at()
        english = rng.random() < 0.12
        source = _pick(rng, SOURCES)
        draft = self._draft(created, source, english)
        if source in FORM_SOURCES and rng.random() < 0.35:
            draft.stage = "MQL"
        elif source in ("Trade show", "Cold call") and rng.random() < 0.15:
            draft.stage = None
        owner = rng.choices(AGENTS, AGENT_WEIGHTS)[0]
        roll = rng.random()
        assert owner.team is not None
        creator = owner if roll < 0.75 else MANAGER_OF[owner.team] if roll < 0.95 else ADMIN
        plan = _Plan(draft, owner, creator)
        self._history(plan, english or owner in ENGLISH_SPEAKERS)
        return plan

    def _draft(self, created: datetime, source: str, english: bool) -> ContactDraft:
        rng = self.rng
        company, domain = rng.choice(COMPANIES) if rng.random() < 0.35 else (None, None)
        name = self._name(english, company)
        phone = self._phone() if rng.random() < 0.93 else None
        email = None
        if phone is None or rng.random() < 0.4:
            email = self._email(name, domain)
        tags = rng.sample(TAGS, rng.choice((1, 1, 2))) if rng.random() < 0.12 else []
        if source == "Trade show" and rng.random() < 0.5:
            tags.append(TRADE_SHOW_TAG)
        value = None
        if company or rng.random() < 0.3:
            amount = rng.randint(6, 400) * 500_000
            value = rng.choice((f"{amount}", f"{amount:,}", f"{amount:,}".replace(",", " ")))
        return ContactDraft(
            name=name,
            phone=phone,
            email=email,
            company=company,
            source=source,
            stage="Lead",
            value=value,
            tags=tags,
            created_at=created,
        )

    def _history(self, plan: _Plan, english: bool) -> None:
        """A walk forward through the stages from the creation stage, one step at a time, until
        the contact stays where it is or the next step would lie after `now`."""
        rng = self.rng
        owner = plan.owner
        assert owner.team is not None
        manager = MANAGER_OF[owner.team]
        mover = manager if owner.telegram_id is None else owner
        stage, at = plan.draft.stage, plan.created_at
        moves: list[_Move] = []
        for _ in range(8):
            step = self._step(stage)
            if step is None:
                break
            at = self._later(at, *step.days)
            if at > self.now:
                break
            reason = _pick(rng, step.reasons) if step.reasons else None
            by = manager if step.reopens or rng.random() < 0.1 else mover
            moves.append(_Move(at, step.target, by, reason))
            stage = step.target
        plan.events = sorted(
            [*moves, *self._activities(plan, moves, stage, english, mover)], key=_when
        )

    def _step(self, stage: str | None) -> _Step | None:
        r = self.rng.random()
        for step in WALK[stage]:
            if r < step.chance:
                return step
            r -= step.chance
        return None

    def _activities(
        self,
        plan: _Plan,
        moves: list[_Move],
        stage: str | None,
        english: bool,
        by: DemoPerson,
    ) -> list[_Activity]:
        rng = self.rng
        created = plan.created_at
        last = moves[-1].at if moves else created
        end = min(self.now, last + timedelta(days=10))
        counts, follow_up = ACTIVITIES[stage]
        found = []
        for _ in range(_pick(rng, counts)):
            at = created + (end - created) * rng.random()
            at = max(at.replace(second=0, microsecond=0), created + timedelta(minutes=1))
            if at > self.now:
                continue
            kind = _pick(rng, ACTIVITY_KINDS)
            due = self._due(at) if kind is ActivityKind.TASK else None
            found.append(_Activity(at, kind, self._text(kind, english), by, due))
        if rng.random() < follow_up:
            # A follow-up task logged in the last days, mostly due after `now`.
            at = max(last, self.now - timedelta(hours=rng.randint(2, 96))) + timedelta(minutes=5)
            at = at.replace(second=0, microsecond=0)
            if created < at <= self.now:
                text = self._text(ActivityKind.TASK, english)
                found.append(_Activity(at, ActivityKind.TASK, text, by, self._due(at)))
        return found

    def _text(self, kind: ActivityKind, english: bool) -> str:
        language = "en" if english or self.rng.random() < 0.15 else "vi"
        return self.rng.choice(NOTES[kind][language])

    def _due(self, at: datetime) -> datetime:
        day = at.astimezone(self.zone).date() + timedelta(days=self.rng.randint(1, 7))
        return self._at(day, self.rng.choice((9, 10, 14, 16)) * 60)

    # Names, numbers and times.

    def _name(self, english: bool, company: str | None) -> str:
        rng = self.rng
        while True:
            if english:
                name = f"{rng.choice(ENGLISH_FIRST)} {rng.choice(ENGLISH_LAST)}"
            else:
                family = _pick(rng, FAMILY)
                if rng.random() < 0.5:
                    name = f"{family} {rng.choice(MIDDLE_MALE)} {rng.choice(GIVEN_MALE)}"
                else:
                    name = f"{family} {rng.choice(MIDDLE_FEMALE)} {rng.choice(GIVEN_FEMALE)}"
            if fold(name) not in self.names and not _finds_an(name, company):
                self.names.add(fold(name))
                return name

    def _phone(self) -> str:
        rng = self.rng
        while True:
            digits = rng.choice(MOBILE_PREFIXES)[1:] + f"{rng.randrange(10**7):07d}"
            if digits not in self.phones:
                self.phones.add(digits)
                return self._written(digits, rng.randrange(5))

    def _written(self, digits: str, style: int) -> str:
        """A nine-digit Vietnamese mobile number without its leading 0, written as people do."""
        a, b, c = digits[:3], digits[3:6], digits[6:]
        if not self.national:
            style = {0: 1, 2: 3, 4: 3}.get(style, style)
        return (
            f"0{a} {b} {c}",
            f"+84 {a} {b} {c}",
            f"0{a}-{b}-{c}",
            f"+84{digits}",
            f"0{digits}",
        )[style]

    def _email(self, name: str, domain: str | None) -> str:
        rng = self.rng
        parts = fold(name).split()
        initials = "".join(p[0] for p in parts[:-1])
        local = rng.choice((f"{parts[-1]}.{parts[0]}", "".join(parts), parts[-1] + initials))
        domain = domain if domain and rng.random() < 0.7 else rng.choice(EMAIL_DOMAINS)
        email = f"{local}@{domain}"
        while email in self.emails:
            email = f"{local}{rng.randint(1, 99)}@{domain}"
        self.emails.add(email)
        return email

    def _created_at(self) -> datetime:
        """A working moment in the last 90 days; recent days a little busier, Sundays quiet."""
        rng = self.rng
        while True:
            if rng.random() < 0.7:
                back = rng.randrange(DEMO_DAYS)
            else:
                back = int(rng.triangular(0, DEMO_DAYS, 0))
            day = self.today - timedelta(days=back)
            if day.weekday() == 6 and rng.random() < 0.7:
                continue
            at = self._at(day, rng.randrange(8 * 60, 18 * 60))
            if at < self.now - timedelta(minutes=10):
                return at

    def _later(self, at: datetime, low: int, high: int) -> datetime:
        """A working moment `low` to `high` days after `at` (later the same day when 0)."""
        day = at.astimezone(self.zone).date() + timedelta(days=self.rng.randint(low, high))
        later = self._at(day, self.rng.randrange(8 * 60, 18 * 60))
        return later if later > at else at + timedelta(minutes=self.rng.randint(15, 180))

    def _at(self, day: date, minutes: int) -> datetime:
        local = datetime.combine(day, time(minutes // 60, minutes % 60), self.zone)
        return local.astimezone(UTC)


def _when(event: _Move | _Activity) -> datetime:
    return event.at


def _finds_an(name: str, company: str | None) -> bool:
    """Whether a search for "nguyen van an" would also find this contact: keep that search
    short, so that the fixed contact is on its first page."""
    found = words(f"{name} {company or ''}")
    return all(any(w.startswith(q) for w in found) for q in ("nguyen", "van", "an"))
