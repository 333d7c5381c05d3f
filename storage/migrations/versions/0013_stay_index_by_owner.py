"""report_moves' stay index orders each moment's stays by owner before length: the stays a bulk
move ends (all at one moment) are then added to report_stay_blocks in the index's order, with
no sort of a million rows. The time-in-stage queries read the same ranges either way.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NAME = "ix_report_moves_stay"
BY_OWNER = ["stay_stage_id", "stay_bucket", "at_s", "owner_id", "stay_s", "creation"]
BY_LENGTH = ["stay_stage_id", "stay_bucket", "at_s", "stay_s", "owner_id", "creation"]


def upgrade() -> None:
    op.drop_index(NAME, table_name="report_moves")
    op.create_index(NAME, "report_moves", BY_OWNER)


def downgrade() -> None:
    op.drop_index(NAME, table_name="report_moves")
    op.create_index(NAME, "report_moves", BY_LENGTH)
