"""Helpers of the report tests: read a database back as the plain lists the reference reads,
run every report both ways, and compare the report tables with a recount from scratch."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text, true

from bot.container import Services
from domain.access import Scope
from domain.model import User
from domain.ports import ContactFilter
from domain.report_reference import ReferenceReports, ReportData
from domain.reports import Period
from storage.db import make_sessionmaker
from storage.models import Base, ReportContactRow, ReportMoveRow, ReportStayBlockRow
from storage.report_projection import recount
from storage.uow import SqlUnitOfWork

REPORTS = ("funnel", "sources", "conversion", "leaderboard", "time_in_stage", "summary")


async def report_data(services: Services) -> ReportData:
    async with SqlUnitOfWork(make_sessionmaker(services.engine)) as uow:
        contacts = await uow.contacts.batch_after(
            ContactFilter(), Scope(everything=True), after_id=0, limit=10**9
        )
        history = []
        activities = []
        for contact in contacts:
            assert contact.id is not None
            history += await uow.history.for_contact(contact.id)
            activities += await uow.activities.for_contact(contact.id)
        return ReportData(
            stages=await uow.stages.list(include_archived=True),
            users=await uow.users.list(),
            contacts=contacts,
            history=history,
            activities=activities,
        )


async def assert_reports_match_reference(
    services: Services, actors: list[User], period: Period
) -> None:
    reference = ReferenceReports(await report_data(services), services.settings.zone)
    for actor in actors:
        assert await services.reports.snapshot(actor) == reference.snapshot(actor), actor.name
        for name in REPORTS:
            computed = await getattr(services.reports, name)(actor, period)
            expected = getattr(reference, name)(actor, period)
            assert computed == expected, f"{name} as {actor.name} over {period}"


async def report_tables(services: Services) -> list[list[tuple[Any, ...]]]:
    """The report tables' rows (those of report_stay_blocks whose stays all went, n = 0, left
    out: a recount does not write them)."""
    days = ReportStayBlockRow.__table__
    async with services.engine.connect() as connection:
        return [
            [
                tuple(row)
                for row in await connection.execute(
                    select(table)
                    .where(days.c.n != 0 if table is days else true())
                    .order_by(*table.primary_key)
                )
            ]
            for table in (ReportContactRow.__table__, ReportMoveRow.__table__, days)
        ]


async def assert_report_tables_in_step(services: Services) -> None:
    """The report tables as the writes left them equal a recount from scratch."""
    kept = await report_tables(services)
    sessions = make_sessionmaker(services.engine)
    async with sessions() as session:
        await recount(session)
        await session.commit()
    assert kept == await report_tables(services)


async def empty_database(services: Services) -> None:
    async with services.engine.begin() as connection:
        if services.engine.dialect.name == "postgresql":
            tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(table.delete())
