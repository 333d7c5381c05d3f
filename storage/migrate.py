"""Running the Alembic migrations from the application (`stagekeeper db upgrade`, `init`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from storage import report_projection
from storage.db import READ_ONLY

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# The revision that last changed how the report tables are computed: a database older than it
# has its report tables recounted once the migrations have run.
REPORT_TABLES = "0011"


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision, on the engine's own connection."""

    def run(connection: Connection) -> bool:
        before = MigrationContext.configure(connection).get_current_heads()
        config = alembic_config(engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        return not before or min(before) < REPORT_TABLES

    async with engine.begin() as connection:
        recount = await connection.run_sync(run)
    if recount:
        async with AsyncSession(engine) as session:
            await report_projection.recount(session)
            await session.commit()


async def pending(engine: AsyncEngine) -> bool:
    """Whether the database lacks the newest schema (new, or made by an older version)."""

    def check(connection: Connection) -> bool:
        heads = set(ScriptDirectory.from_config(alembic_config("")).get_heads())
        current = set(MigrationContext.configure(connection).get_current_heads())
        return current != heads

    async with engine.connect() as connection:
        # A read: on SQLite it begins deferred, so that it waits for no writer (storage.db).
        await connection.execution_options(**{READ_ONLY: True})
        return await connection.run_sync(check)
