"""Report tables, second form: `report_moves` (one row per history row: the stay it ended, and
whether it entered the won or the lost category, with the previous such entry) replaces
`report_stays`, and `report_contacts` gains what appending a history row needs. Both are
derived data: `storage.migrate.upgrade` fills them after the migrations (docs/reports.md).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

INDEXES = (  # (name, table, columns, partial index condition)
    (
        "ix_report_contacts_path",
        "report_contacts",
        ["path", "stage_id", "entered_s", "owner_id"],
        None,
    ),
    ("ix_report_contacts_source", "report_contacts", ["source", "created_s", "owner_id"], None),
    ("ix_report_contacts_idle", "report_contacts", ["created_s", "owner_id"], "NOT touched"),
    (
        "ix_report_contacts_owner",
        "report_contacts",
        ["owner_id", "response_bucket", "created_s", "responded_s"],
        None,
    ),
    (
        "ix_report_moves_entry",
        "report_moves",
        ["entry", "at_s", "prev_entry_s", "owner_id"],
        "entry > 0",
    ),
    (
        "ix_report_moves_owner_entry",
        "report_moves",
        ["entry", "owner_id", "age_bucket", "at_s", "prev_entry_s", "age_s"],
        "entry > 0",
    ),
    (
        "ix_report_moves_stay",
        "report_moves",
        ["stay_stage_id", "stay_bucket", "at_s", "stay_s", "owner_id", "creation"],
        None,
    ),
)


def upgrade() -> None:
    op.drop_table("report_stays")
    op.drop_table("report_contacts")
    op.create_table(
        "report_contacts",
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("stage_id", sa.Integer(), nullable=False),
        sa.Column("created_s", sa.BigInteger(), nullable=False),
        sa.Column("entered_s", sa.BigInteger(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("touched", sa.Boolean(), nullable=False),
        sa.Column("responded_s", sa.BigInteger(), nullable=True),
        sa.Column("response_bucket", sa.Integer(), nullable=False),
        sa.Column("last_stage_id", sa.Integer(), nullable=False),
        sa.Column("last_at_s", sa.BigInteger(), nullable=True),
        sa.Column("last_won_s", sa.BigInteger(), nullable=True),
        sa.Column("last_lost_s", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("contact_id"),
    )
    op.create_table(
        "report_moves",
        sa.Column("change_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("created_s", sa.BigInteger(), nullable=False),
        sa.Column("at_s", sa.BigInteger(), nullable=False),
        sa.Column("to_stage_id", sa.Integer(), nullable=False),
        sa.Column("from_stage_id", sa.Integer(), nullable=False),
        sa.Column("creation", sa.Boolean(), nullable=False),
        sa.Column("stay_stage_id", sa.Integer(), nullable=False),
        sa.Column("stay_s", sa.BigInteger(), nullable=True),
        sa.Column("stay_bucket", sa.Integer(), nullable=False),
        sa.Column("entry", sa.Integer(), nullable=False),
        sa.Column("prev_entry_s", sa.BigInteger(), nullable=True),
        sa.Column("age_s", sa.BigInteger(), nullable=False),
        sa.Column("age_bucket", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["change_id"], ["stage_changes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("change_id"),
    )
    op.create_table(
        "report_stay_blocks",
        sa.Column("stay_stage_id", sa.Integer(), nullable=False),
        sa.Column("stay_bucket", sa.Integer(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("total_s", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stay_stage_id", "stay_bucket", "block", "owner_id"),
    )
    # A bulk move's before-image of the report row, for its undo (plain ALTER TABLE: a batch
    # rebuild would copy the table).
    for column in (
        sa.Column("before_report_path", sa.Text(), nullable=True),
        sa.Column("before_report_touched", sa.Boolean(), nullable=True),
        sa.Column("before_report_entered_s", sa.BigInteger(), nullable=True),
        sa.Column("before_report_last_at_s", sa.BigInteger(), nullable=True),
    ):
        op.add_column("operation_items", column)
    for name, table, columns, where in INDEXES:
        condition = None if where is None else sa.text(where)
        op.create_index(name, table, columns, sqlite_where=condition, postgresql_where=condition)


def downgrade() -> None:
    """Back to the tables of 0010, empty: the code of that revision does not fill them again,
    so its reports would read nothing until `refresh(None)` of that code ran."""
    for column in (
        "before_report_path",
        "before_report_touched",
        "before_report_entered_s",
        "before_report_last_at_s",
    ):
        op.execute(f"ALTER TABLE operation_items DROP COLUMN {column}")
    op.drop_table("report_stay_blocks")
    op.drop_table("report_moves")
    op.drop_table("report_contacts")
    op.create_table(
        "report_contacts",
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contacts.id"), primary_key=True),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=True),
        sa.Column("stage_id", sa.Integer(), nullable=True),
        sa.Column("created_s", sa.BigInteger(), nullable=False),
        sa.Column("entered_s", sa.BigInteger(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("touched", sa.Boolean(), nullable=False),
        sa.Column("responded_s", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "report_stays",
        sa.Column("change_id", sa.Integer(), sa.ForeignKey("stage_changes.id"), primary_key=True),
        sa.Column("contact_id", sa.Integer(), sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("created_s", sa.BigInteger(), nullable=False),
        sa.Column("stage_id", sa.Integer(), nullable=True),
        sa.Column("from_stage_id", sa.Integer(), nullable=True),
        sa.Column("entered_s", sa.BigInteger(), nullable=False),
        sa.Column("left_s", sa.BigInteger(), nullable=True),
    )
