"""aiogram routers: parse the update, call a service, render. One Router per module."""

from __future__ import annotations

from aiogram import Router

from handlers import errors, start


def routers() -> list[Router]:
    """Every router, in the order the dispatcher should try them."""
    return [start.router, errors.router]
