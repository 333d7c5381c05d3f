"""The composition root's core: one engine and the services built on it, from settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.settings import Settings
from domain.services.apikeys import ApiKeyService
from domain.services.contacts import ContactService
from domain.services.digests import DigestService
from domain.services.events import EventService
from domain.services.exports import ExportService
from domain.services.fields import FieldService
from domain.services.imports import ImportService
from domain.services.operations import OperationService
from domain.services.reports import ReportService
from domain.services.stages import StageService
from domain.services.users import UserService
from domain.services.views import ViewService
from storage.db import make_engine, make_sessionmaker
from storage.import_batches import batches
from storage.uow import SqlUnitOfWork


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    stages: StageService
    contacts: ContactService
    users: UserService
    operations: OperationService
    imports: ImportService
    views: ViewService
    exports: ExportService
    fields: FieldService
    digests: DigestService
    events: EventService
    api_keys: ApiKeyService
    reports: ReportService

    async def close(self) -> None:
        await self.engine.dispose()


def build_services(settings: Settings, engine: AsyncEngine | None = None) -> Services:
    engine = engine or make_engine(settings.database_url, synchronous=settings.sqlite_synchronous)
    sessions = make_sessionmaker(engine)

    def uow(*, bulk: bool = False, read_only: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(sessions, bulk=bulk, read_only=read_only)

    policy = settings.policy
    return Services(
        settings=settings,
        engine=engine,
        stages=StageService(uow, policy),
        contacts=ContactService(uow, default_region=settings.default_phone_region, policy=policy),
        users=UserService(uow),
        operations=OperationService(uow, policy, zone=settings.zone),
        views=ViewService(uow, settings.zone),
        imports=ImportService(
            uow,
            read_batches=batches,
            default_region=settings.default_phone_region,
            zone=settings.zone,
            policy=policy,
            limits=settings.import_limits,
        ),
        exports=ExportService(uow, zone=settings.zone),
        fields=FieldService(uow),
        digests=DigestService(uow, settings.zone, default_idle_days=settings.idle_days),
        events=EventService(
            uow,
            default_region=settings.default_phone_region,
            policy=policy,
            routing=settings.routing,
        ),
        api_keys=ApiKeyService(uow),
        reports=ReportService(uow, settings.zone),
    )
