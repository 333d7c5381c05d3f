"""aiogram routers: parse the update, call a service, render. Each module builds its Router in
`build_router()`, so that every Dispatcher (several run in one test process) gets its own."""

from __future__ import annotations

from aiogram import Router

from handlers import (
    access,
    automation,
    bulk,
    contacts,
    digest,
    errors,
    export,
    fields,
    imports,
    new_contact,
    people,
    reports,
    stages_admin,
    views,
)


def routers() -> list[Router]:
    """Every router, in the order the dispatcher should try them."""
    return [
        contacts.build_button_router(),
        access.build_router(),
        new_contact.build_router(),
        people.build_router(),
        stages_admin.build_router(),
        bulk.build_router(),
        views.build_router(),
        export.build_router(),
        imports.build_router(),
        fields.build_router(),
        digest.build_router(),
        reports.build_router(),
        automation.build_router(),
        contacts.build_router(),
        errors.build_router(),
    ]
