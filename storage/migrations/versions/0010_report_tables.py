"""Report tables: one row per contact and one per history row, derived from the history
(docs/reports.md, "How the database keeps up"); 0011 replaces them.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_contacts",
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("stage_id", sa.Integer(), nullable=True),
        sa.Column("created_s", sa.BigInteger(), nullable=False),
        sa.Column("entered_s", sa.BigInteger(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("touched", sa.Boolean(), nullable=False),
        sa.Column("responded_s", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_table(
        "report_stays",
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("created_s", sa.BigInteger(), nullable=False),
        sa.Column("stage_id", sa.Integer(), nullable=True),
        sa.Column("from_stage_id", sa.Integer(), nullable=True),
        sa.Column("entered_s", sa.BigInteger(), nullable=False),
        sa.Column("left_s", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["change_id"], ["stage_changes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("change_id"),
    )
    # Filled by `storage.migrate.upgrade` once every migration has run (0011 replaces them).
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


INDEXES = (
    ("ix_report_contacts_stage", "report_contacts", ["stage_id", "owner_id"]),
    (
        "ix_report_contacts_entered",
        "report_contacts",
        ["entered_s", "path", "stage_id", "owner_id"],
    ),
    (
        "ix_report_contacts_created",
        "report_contacts",
        ["created_s", "owner_id", "source", "touched", "responded_s"],
    ),
    ("ix_report_contacts_owner", "report_contacts", ["owner_id", "created_s", "responded_s"]),
    ("ix_report_stays_contact_id", "report_stays", ["contact_id"]),
    (
        "ix_report_stays_entered",
        "report_stays",
        ["stage_id", "entered_s", "from_stage_id", "owner_id", "contact_id"],
    ),
    (
        "ix_report_stays_owner",
        "report_stays",
        ["owner_id", "stage_id", "entered_s", "from_stage_id", "contact_id", "created_s"],
    ),
    ("ix_report_stays_left", "report_stays", ["stage_id", "left_s", "entered_s", "owner_id"]),
)


def downgrade() -> None:
    op.drop_table("report_stays")
    op.drop_table("report_contacts")
