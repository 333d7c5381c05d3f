"""The morning digest and reminders: who gets what when, what was delivered (exactly once),
which process runs the scheduler, per-stage idle thresholds, and task reminders.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "digest_settings",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("send_at", sa.String(length=5), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("sections", sa.JSON(), nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "deliveries",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("user_id", "day", "kind"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("stages") as batch_op:
        batch_op.add_column(sa.Column("idle_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("activities") as batch_op:
        batch_op.add_column(sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_activities_kind_due_at", ["kind", "due_at"])


def downgrade() -> None:
    with op.batch_alter_table("activities") as batch_op:
        batch_op.drop_index("ix_activities_kind_due_at")
        batch_op.drop_column("reminded_at")
    with op.batch_alter_table("stages") as batch_op:
        batch_op.drop_column("idle_days")
    op.drop_table("leases")
    op.drop_table("deliveries")
    op.drop_table("digest_settings")
