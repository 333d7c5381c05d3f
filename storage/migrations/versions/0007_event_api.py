"""The HTTP API and automation: API keys, received events, rules, lead assignment turns and
notices of new leads.

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

ACTIVE = sa.text("revoked_at IS NULL")
PENDING = sa.text("sent_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("name_key", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("secret_hash"),
    )
    with op.batch_alter_table("api_keys") as batch_op:
        batch_op.create_index("ix_api_keys_prefix", ["prefix"])
        batch_op.create_index(
            "uq_api_keys_active_name",
            ["name_key"],
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("via", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("value", sa.Numeric(18, 2), nullable=True),
        sa.Column("outcome", sa.String(length=12), nullable=False),
        sa.Column("created_contact", sa.Boolean(), nullable=False),
        sa.Column("from_stage_id", sa.Integer(), nullable=True),
        sa.Column("to_stage_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["from_stage_id"], ["stages.id"]),
        sa.ForeignKeyConstraint(["to_stage_id"], ["stages.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("events") as batch_op:
        # NULL keys never clash: events without an idempotency key are all kept.
        batch_op.create_index(
            "uq_events_via_idempotency_key", ["via", "idempotency_key"], unique=True
        )
        batch_op.create_index("ix_events_contact_kind", ["contact_id", "kind"])
    op.create_table(
        "automation_rules",
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("stage_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["stage_id"], ["stages.id"]),
        sa.PrimaryKeyConstraint("trigger"),
    )
    op.create_table(
        "assignment_turns",
        sa.Column("queue", sa.String(length=80), nullable=False),
        sa.Column("last_user_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("queue"),
    )
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notices") as batch_op:
        batch_op.create_index(
            "ix_notices_pending", ["id"], sqlite_where=PENDING, postgresql_where=PENDING
        )


def downgrade() -> None:
    op.drop_table("notices")
    op.drop_table("assignment_turns")
    op.drop_table("automation_rules")
    op.drop_table("events")
    op.drop_table("api_keys")
