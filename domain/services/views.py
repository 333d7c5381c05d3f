"""Saved views: save a filter under a name (private, or shared by managers and admins), list the
views someone may use, and open one as a list of contacts within the user's scope."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from domain import fields
from domain.access import Scope
from domain.errors import AccessDenied, InvalidInput, NotFound, StageNotFound
from domain.model import Role, SavedView, User, utcnow
from domain.ports import Clock, ContactFilter, UnitOfWork, UnitOfWorkFactory
from domain.services.contacts import ContactDetails, with_names
from domain.stages import Pipeline
from domain.text import clean_name, fold
from domain.views import ViewFilter, parse_filter

NAME_MAX = 64


class ViewService:
    def __init__(self, uow: UnitOfWorkFactory, zone: ZoneInfo, clock: Clock = utcnow) -> None:
        self._uow = uow
        self._zone = zone
        self._clock = clock

    async def save(self, actor: User, name: str, text: str, *, shared: bool = False) -> SavedView:
        name = clean_name(name)
        if not name or len(name) > NAME_MAX:
            raise InvalidInput(f"A view needs a name of 1 to {NAME_MAX} characters.")
        if shared and actor.role is Role.AGENT:
            raise AccessDenied("Only managers and admins share views.")
        view_filter = parse_filter(text)
        async with self._uow() as uow:
            # Refuses unknown stages, owners and fields, and values a field's kind refuses.
            await contact_filter(uow, view_filter, self._zone, self._clock())
            for view in await uow.views.visible_to(actor.id):
                if fold(view.name) == fold(name) and (view.owner_id == actor.id or view.shared):
                    raise InvalidInput(f"A view called {view.name!r} exists already.")
            view = await uow.views.add(
                SavedView(None, actor.id, name, view_filter.to_json(), shared, self._clock())
            )
            await uow.commit()
        return view

    async def visible(self, actor: User) -> list[SavedView]:
        async with self._uow(read_only=True) as uow:
            return await uow.views.visible_to(actor.id)

    async def named(self, actor: User, name: str) -> SavedView:
        """The view called `name` (ignoring case and accents) among those the actor may use;
        an admin may use anyone's."""
        async with self._uow(read_only=True) as uow:
            views = await uow.views.visible_to(None if actor.role is Role.ADMIN else actor.id)
        found = [view for view in views if fold(view.name) == fold(name)]
        if not found:
            raise NotFound(f"There is no view called {name!r}.")
        if len(found) > 1:
            raise InvalidInput(f"Several views are called {name!r}; rename one first.")
        return found[0]

    async def open(
        self, actor: User, view_id: int, *, limit: int = 50, offset: int = 0
    ) -> tuple[SavedView, list[ContactDetails]]:
        async with self._uow(read_only=True) as uow:
            view, where = await view_selection(uow, actor, view_id, self._zone, self._clock())
            found = await uow.contacts.listing(where, Scope.of(actor), limit=limit, offset=offset)
            return view, await with_names(uow, found)

    async def delete(self, actor: User, view_id: int) -> None:
        async with self._uow() as uow:
            view = await visible_view(uow, actor, view_id)
            if view.owner_id != actor.id and actor.role is not Role.ADMIN:
                raise AccessDenied("Only its owner or an admin deletes a shared view.")
            await uow.views.delete(view_id)
            await uow.commit()


async def visible_view(uow: UnitOfWork, actor: User, view_id: int) -> SavedView:
    view = await uow.views.get(view_id)
    mine = view is not None and (view.shared or view.owner_id == actor.id)
    if view is None or not (mine or actor.role is Role.ADMIN):
        raise NotFound("That view no longer exists.")
    return view


async def view_selection(
    uow: UnitOfWork, actor: User, view_id: int, zone: tzinfo, now: datetime
) -> tuple[SavedView, ContactFilter]:
    """A view the actor may use, and the contacts it selects as of `now` (its idle days and
    dates counted then, its stage and owner names looked up afresh)."""
    view = await visible_view(uow, actor, view_id)
    return view, await contact_filter(uow, ViewFilter.from_json(view.filter), zone, now)


async def contact_filter(
    uow: UnitOfWork, view: ViewFilter, zone: tzinfo, now: datetime
) -> ContactFilter:
    pipeline = Pipeline(await uow.stages.list())
    stage_ids: list[int] = []
    without_stage = False
    for name in view.stages:
        if fold(name) in ("none", "no stage"):
            without_stage = True
            continue
        try:
            stage = pipeline.find(name)
        except StageNotFound:
            raise InvalidInput(f"There is no stage called {name!r}.") from None
        assert stage.id is not None
        stage_ids.append(stage.id)
    if view.category is not None:
        in_category = {s.id for s in pipeline.in_category(view.category) if s.id is not None}
        stage_ids = [i for i in stage_ids if i in in_category] if view.stages else list(in_category)
    owner_id = None
    if view.owner is not None:
        owners = await uow.users.by_name(view.owner)
        if len(owners) != 1:
            raise InvalidInput(f"No one (or several people) called {view.owner!r}.")
        owner_id = owners[0].id
    defined = await uow.fields.list()
    values = []
    for name, raw in view.fields.items():
        field = fields.find(defined, name)
        values.append((field.key, fields.canonical(field, raw)) if field else (name, raw))

    def day_start(day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=zone)

    return ContactFilter(
        owner_id=owner_id,
        stage_ids=tuple(stage_ids) if (view.stages or view.category) else None,
        without_stage=without_stage,
        source=view.source,
        tag=view.tag,
        idle_since=now - timedelta(days=view.idle_days) if view.idle_days else None,
        created_from=day_start(view.created_from) if view.created_from else None,
        created_before=day_start(view.created_to) + timedelta(days=1) if view.created_to else None,
        fields=tuple(values),
    )
