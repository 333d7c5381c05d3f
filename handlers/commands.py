"""The command menu (setMyCommands), per language and per role: agents see theirs everywhere;
managers and admins get theirs in their own chat."""

from __future__ import annotations

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from domain.model import Role, User
from handlers.i18n import LANGUAGES, language_of


def commands_for(role: Role) -> list[BotCommand]:
    commands = [
        BotCommand(command="find", description=_("Find a contact")),
        BotCommand(command="my", description=_("My open leads")),
        BotCommand(command="idle", description=_("Leads nobody touched lately")),
        BotCommand(command="new", description=_("Add a contact")),
        BotCommand(command="export", description=_("Contacts as a CSV file")),
        BotCommand(command="move", description=_("Move matching leads to a stage")),
        BotCommand(command="undo", description=_("Undo a bulk operation")),
        BotCommand(command="views", description=_("Saved lists of contacts")),
        BotCommand(command="digest", description=_("Your morning message")),
        BotCommand(command="report", description=_("Reports and charts")),
        BotCommand(command="lang", description=_("Language")),
        BotCommand(command="help", description=_("What I can do")),
        BotCommand(command="cancel", description=_("Stop what you are doing")),
    ]
    if role is Role.ADMIN:
        commands.append(BotCommand(command="stages", description=_("Stages")))
        commands.append(BotCommand(command="users", description=_("People and access")))
        commands.append(BotCommand(command="fields", description=_("Custom fields")))
        commands.append(BotCommand(command="rules", description=_("Automation rules")))
        commands.append(BotCommand(command="apikeys", description=_("API keys")))
    return commands


async def publish_default_commands(bot: Bot, i18n: I18n) -> None:
    for language in LANGUAGES:
        with i18n.context(), i18n.use_locale(language):
            await bot.set_my_commands(
                commands_for(Role.AGENT), scope=BotCommandScopeDefault(), language_code=language
            )


async def publish_commands(bot: Bot, users: list[User], i18n: I18n) -> None:
    """Each person's menu in their chat, in their language (managers and admins have more)."""
    for user in users:
        if user.telegram_id is None or not user.active or user.role is Role.AGENT:
            continue
        with i18n.context(), i18n.use_locale(language_of(user, None, i18n.default_locale)):
            try:
                await bot.set_my_commands(
                    commands_for(user.role), scope=BotCommandScopeChat(chat_id=user.telegram_id)
                )
            except TelegramAPIError:
                continue  # they have not started the bot yet
