"""Configuration from the environment (and a `.env` file). Every setting is documented in
`.env.example`."""

from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.services.events import LeadRouting
from domain.transitions import DEFAULT_LOST_REASONS, Policy
from domain.workbooks import MAX_ROWS, MAX_UNPACKED, FileLimits

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///stagekeeper.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr | None = None
    database_url: str = DEFAULT_DATABASE_URL
    # Conversation state and per-person ordering shared by several workers (bot.conversations).
    redis_url: str | None = None
    # NORMAL: a power loss may lose the last commits, never corrupts the file; FULL loses none.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    timezone: str = "Asia/Ho_Chi_Minh"
    default_phone_region: str = "VN"
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    telegram_api_base: str = "https://api.telegram.org"
    forward_only: bool = False
    lost_reasons: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_LOST_REASONS)
    )
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_host: str = "0.0.0.0"
    webhook_port: int = 8080
    webhook_path: str = "/telegram/webhook"
    # Updates Telegram may post at once (Telegram's default is 40; one chat's come one by one).
    webhook_max_connections: int = Field(default=40, ge=1, le=100)
    default_language: str = "en"
    log_level: str = "INFO"
    idle_days: int = Field(default=7, ge=1, le=365)
    scheduler: bool = True  # run the digest and reminders (one process per database does)
    # How long the scheduler's lease lasts unrenewed: after its holder died, another process
    # takes over (and sends what is due) within this.
    scheduler_lease_seconds: float = Field(default=60.0, ge=3, le=3600)
    leads_team: str | None = None
    lead_owners: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    notify_rate: float = Field(default=25.0, gt=0, le=30)
    # A long import's progress message: shown after this many seconds, edited at most this often.
    progress_delay: float = Field(default=1.0, ge=0, le=60)
    progress_interval: float = Field(default=2.0, gt=0, le=60)
    # The largest file an import takes (chat and command line): rows, the header included, and
    # megabytes a workbook unpacks to. Past them a file is refused before a row is read.
    import_max_rows: int = Field(default=MAX_ROWS, ge=2)
    import_max_unpacked_mb: int = Field(default=MAX_UNPACKED >> 20, ge=1)

    @property
    def import_limits(self) -> FileLimits:
        return FileLimits(rows=self.import_max_rows, unpacked=self.import_max_unpacked_mb << 20)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.replace(";", ",").split(",") if part.strip()]
        return value

    @field_validator("lost_reasons", mode="before")
    @classmethod
    def _split_reasons(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("lead_owners", mode="before")
    @classmethod
    def _pairs(cls, value: object) -> object:
        """`Website=Lan; Facebook=2003`: a source, then its owner's name or Telegram id."""
        if not isinstance(value, str):
            return value
        pairs = {}
        for part in value.split(";"):
            if not part.strip():
                continue
            source, equals, owner = part.partition("=")
            if not equals or not source.strip() or not owner.strip():
                raise ValueError(f"{part.strip()!r} is not SOURCE=OWNER")
            pairs[source.strip()] = owner.strip()
        return pairs

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use e.g. Asia/Ho_Chi_Minh)") from None
        return value

    @field_validator("default_phone_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = value.strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {value!r} (use a code such as VN or US)")
        return region

    @property
    def policy(self) -> Policy:
        return Policy(forward_only=self.forward_only, lost_reasons=tuple(self.lost_reasons))

    @property
    def routing(self) -> LeadRouting:
        return LeadRouting(team=self.leads_team or None, owners=dict(self.lead_owners))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
