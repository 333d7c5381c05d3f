"""The report tables and the report queries (docs/reports.md, "How the database keeps up").

`report_contacts` and `report_stays` are derived from contacts, stage_changes and activities
alone. `refresh` rebuilds them for some contacts with a few set-based statements; every write
that changes a contact's history, activities, owner, source or stage calls it in the same
transaction, and `refresh(session, None)` is the recount from scratch the tests compare with.
They hold stage ids only: categories and positions are applied when a report runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Executable,
    Integer,
    Select,
    SQLColumnExpression,
    String,
    Subquery,
    case,
    cast,
    delete,
    distinct,
    exists,
    extract,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from domain.model import Source
from domain.ports import CreatedGroup, PathGroup, ReportWindow
from domain.reports import StayFigures, middle_mean
from storage.models import (
    ActivityRow,
    ContactRow,
    ReportContactRow,
    ReportStayRow,
    StageChangeRow,
)

NO_OWNER = 0
CHUNK = 5000

Contacts = Sequence[int] | Select[Any] | None  # some contacts by id, a query of ids, or all


def epoch(moment: SQLColumnExpression[Any], dialect: str) -> ColumnElement[int]:
    """Whole seconds since 1970 of a stored time, truncated, identically on both databases."""
    if dialect == "postgresql":
        return cast(func.floor(extract("epoch", moment)), BigInteger)
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff', and strftime('%s') would round the fraction.
    return cast(func.strftime("%s", func.substr(moment, 1, 19)), Integer)


async def refresh(session: AsyncSession, contacts: Contacts) -> None:
    """Bring the report rows of these contacts in step with their data (in chunks for long lists
    of ids, which would exceed the databases' parameter limits)."""
    dialect = session.get_bind().dialect.name
    if isinstance(contacts, Sequence):
        ids = sorted(set(contacts))
        chunks: Iterable[Contacts] = (ids[n : n + CHUNK] for n in range(0, len(ids), CHUNK))
    else:
        chunks = [contacts]
    for chunk in chunks:
        for statement in refresh_statements(dialect, chunk):
            await session.execute(statement)


def refresh_statements(dialect: str, contacts: Contacts) -> list[Executable]:
    """Delete and recompute the report rows of `contacts` (all of them for None)."""
    h = StageChangeRow
    c = ContactRow
    a = ActivityRow

    def among(column: SQLColumnExpression[int]) -> ColumnElement[bool]:
        return true() if contacts is None else column.in_(contacts)

    def seconds(moment: SQLColumnExpression[Any]) -> ColumnElement[int]:
        return epoch(moment, dialect)

    owner = func.coalesce(c.owner_id, NO_OWNER)
    following = func.lead(h.at).over(partition_by=h.contact_id, order_by=(h.at, h.id))
    stays = select(
        h.id, h.contact_id, owner, h.to_stage_id, h.from_stage_id, seconds(h.at), seconds(following)
    ).join(c, c.id == h.contact_id)

    # The path: each stage entered, at its last entry, concatenated in history order.
    last_entries = (
        select(
            h.contact_id,
            h.to_stage_id,
            h.at,
            h.id,
            func.row_number()
            .over(partition_by=(h.contact_id, h.to_stage_id), order_by=(h.at.desc(), h.id.desc()))
            .label("latest"),
        )
        .where(h.to_stage_id.is_not(None), among(h.contact_id))
        .subquery()
    )
    paths = (
        select(
            last_entries.c.contact_id,
            func.aggregate_strings(cast(last_entries.c.to_stage_id, String), " ")
            .over(
                partition_by=last_entries.c.contact_id,
                order_by=(last_entries.c.at, last_entries.c.id),
                rows=(None, None),
            )
            .label("path"),
        )
        .where(last_entries.c.latest == 1)
        .distinct()
        .subquery()
    )
    after_creation = h.at > c.created_at
    facts = (
        select(
            c.id,
            owner.label("owner_id"),
            c.source,
            c.stage_id,
            c.created_at,
            select(func.min(h.at))
            .where(h.contact_id == c.id, h.to_stage_id.is_not(None))
            .scalar_subquery()
            .label("entered_at"),
            select(func.min(a.at))
            .where(a.contact_id == c.id, a.at > c.created_at)
            .scalar_subquery()
            .label("activity_at"),
            select(func.min(h.at))
            .where(h.contact_id == c.id, h.source == Source.MANUAL.value, after_creation)
            .scalar_subquery()
            .label("manual_at"),
            exists().where(h.contact_id == c.id, after_creation).label("changed"),
        )
        .where(among(c.id))
        .subquery()
    )
    f = facts.c
    responded = case(
        (f.manual_at.is_(None), f.activity_at),
        (f.activity_at.is_(None), f.manual_at),
        (f.activity_at <= f.manual_at, f.activity_at),
        else_=f.manual_at,
    )
    contact_rows = select(
        f.id,
        f.owner_id,
        f.source,
        f.stage_id,
        seconds(f.created_at),
        seconds(f.entered_at),
        func.coalesce(paths.c.path, ""),
        or_(f.activity_at.is_not(None), f.changed),
        seconds(responded),
    ).outerjoin(paths, paths.c.contact_id == f.id)
    return [
        delete(ReportStayRow).where(among(ReportStayRow.contact_id)),
        insert(ReportStayRow).from_select(
            [
                "change_id",
                "contact_id",
                "owner_id",
                "stage_id",
                "from_stage_id",
                "entered_s",
                "left_s",
            ],
            stays.where(among(h.contact_id)),
        ),
        delete(ReportContactRow).where(among(ReportContactRow.contact_id)),
        insert(ReportContactRow).from_select(
            [
                "contact_id",
                "owner_id",
                "source",
                "stage_id",
                "created_s",
                "entered_s",
                "path",
                "touched",
                "responded_s",
            ],
            contact_rows,
        ),
    ]


class SqlReportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def current_stages(self, owners: tuple[int | None, ...]) -> dict[int | None, int]:
        r = ReportContactRow
        rows = await self._session.execute(
            select(r.stage_id, func.count()).where(_owned(r.owner_id, owners)).group_by(r.stage_id)
        )
        return dict(rows.all())

    async def cohort_paths(self, window: ReportWindow) -> list[PathGroup]:
        r = ReportContactRow
        rows = await self._session.execute(
            select(r.path, r.stage_id, func.count())
            .where(_owned(r.owner_id, window.owners), *_within(r.entered_s, window))
            .group_by(r.path, r.stage_id)
        )
        return [
            PathGroup(tuple(int(s) for s in path.split()), stage_id, n)
            for path, stage_id, n in rows.all()
        ]

    async def created(self, window: ReportWindow) -> list[CreatedGroup]:
        r = ReportContactRow
        rows = await self._session.execute(
            select(
                r.owner_id,
                r.source,
                func.count(),
                func.sum(case((r.touched, 0), else_=1)),
            )
            .where(_owned(r.owner_id, window.owners), *_within(r.created_s, window))
            .group_by(r.owner_id, r.source)
        )
        return [
            CreatedGroup(_owner(owner), source, n, int(idle))
            for owner, source, n, idle in rows.all()
        ]

    async def entered(
        self, owners: tuple[int | None, ...], into: tuple[int, ...], bounds: Sequence[int]
    ) -> dict[tuple[int | None, int], int]:
        s = ReportStayRow
        inner = bounds[1:-1]
        bucket: ColumnElement[int] = (
            case(*[(s.entered_s < b, n) for n, b in enumerate(inner)], else_=len(inner))
            if inner
            else literal(0)
        )
        entries = (
            select(s.owner_id, s.contact_id, bucket.label("bucket"))
            .where(
                _owned(s.owner_id, owners),
                *_entering(into),
                s.entered_s >= bounds[0],
                s.entered_s < bounds[-1],
            )
            .subquery()
        )
        e = entries.c
        rows = await self._session.execute(
            select(e.owner_id, e.bucket, func.count(distinct(e.contact_id))).group_by(
                e.owner_id, e.bucket
            )
        )
        return {(_owner(owner), bucket_n): n for owner, bucket_n, n in rows.all()}

    async def days_to_win(
        self, window: ReportWindow, won: tuple[int, ...]
    ) -> dict[int | None, float]:
        s = ReportStayRow
        r = ReportContactRow
        per_contact = (
            select(
                s.owner_id.label("key"),
                (func.min(s.entered_s) - r.created_s).label("value"),
            )
            .join(r, r.contact_id == s.contact_id)
            .where(
                _owned(s.owner_id, window.owners), *_entering(won), *_within(s.entered_s, window)
            )
            .group_by(s.owner_id, s.contact_id, r.created_s)
            .subquery()
        )
        return {_owner(k): m for k, m in (await self._medians(per_contact)).items()}

    async def first_response(self, window: ReportWindow) -> dict[int | None, float]:
        r = ReportContactRow
        values = (
            select(r.owner_id.label("key"), (r.responded_s - r.created_s).label("value"))
            .where(
                _owned(r.owner_id, window.owners),
                *_within(r.created_s, window),
                r.responded_s.is_not(None),
            )
            .subquery()
        )
        return {_owner(k): m for k, m in (await self._medians(values)).items()}

    async def stays(
        self, window: ReportWindow, stage_ids: tuple[int, ...]
    ) -> dict[int, StayFigures]:
        s = ReportStayRow
        ended = (
            _owned(s.owner_id, window.owners),
            s.stage_id.in_(stage_ids),
            *_within(s.left_s, window),
        )
        length = s.left_s - s.entered_s
        totals = await self._session.execute(
            select(s.stage_id, func.count(), func.sum(length)).where(*ended).group_by(s.stage_id)
        )
        medians = await self._medians(
            select(s.stage_id.label("key"), length.label("value")).where(*ended).subquery()
        )
        return {
            stage_id: StayFigures(n, int(total or 0), medians.get(stage_id))
            for stage_id, n, total in totals.all()
            if stage_id is not None
        }

    async def _medians(self, values: Subquery) -> dict[Any, float]:
        """Per key, the median of the values: the database sorts and returns the middle one or
        two of each key's values (no percentile function on SQLite); their mean is taken here,
        so both databases give the same float."""
        v = values.c
        ranked = select(
            v.key,
            v.value,
            func.row_number().over(partition_by=v.key, order_by=v.value).label("rank"),
            func.count().over(partition_by=v.key).label("n"),
        ).subquery()
        k = ranked.c
        rows = await self._session.execute(
            select(k.key, k.value).where(or_(k.rank == (k.n + 1) // 2, k.rank == (k.n + 2) // 2))
        )
        middles: dict[Any, list[int]] = {}
        for key, value in rows.all():
            middles.setdefault(key, []).append(int(value))
        return {key: middle_mean(min(vs), max(vs)) for key, vs in middles.items()}


def _owned(column: SQLColumnExpression[int], owners: tuple[int | None, ...]) -> ColumnElement[bool]:
    return column.in_([NO_OWNER if owner is None else owner for owner in owners])


def _owner(stored: int) -> int | None:
    return None if stored == NO_OWNER else stored


def _within(column: SQLColumnExpression[Any], window: ReportWindow) -> list[ColumnElement[bool]]:
    return [column >= window.start, column < window.end]


def _entering(into: tuple[int, ...]) -> list[ColumnElement[bool]]:
    """History rows entering one of `into` from outside them (or from no stage)."""
    s = ReportStayRow
    return [
        s.stage_id.in_(into),
        or_(s.from_stage_id.is_(None), s.from_stage_id.not_in(into)),
    ]
