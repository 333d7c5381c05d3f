"""What each bulk operation changed, contact by contact, so that it can be undone exactly; and
the stage a deletion archived.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operations") as batch_op:
        batch_op.add_column(sa.Column("stage_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("contacts", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("undone_by_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_operations_stage", "stages", ["stage_id"], ["id"])
        batch_op.create_foreign_key("fk_operations_undone_by", "users", ["undone_by_id"], ["id"])
    op.create_table(
        "operation_items",
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("created", sa.Boolean(), nullable=False),
        sa.Column("before_stage_id", sa.Integer(), nullable=True),
        sa.Column("before_stage_entered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("before_last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("before_fields", sa.JSON(), nullable=True),
        sa.Column("after_version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["operation_id"], ["operations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("operation_id", "contact_id"),
    )


def downgrade() -> None:
    op.drop_table("operation_items")
    with op.batch_alter_table("operations") as batch_op:
        batch_op.drop_constraint("fk_operations_undone_by", type_="foreignkey")
        batch_op.drop_constraint("fk_operations_stage", type_="foreignkey")
        batch_op.drop_column("undone_by_id")
        batch_op.drop_column("contacts")
        batch_op.drop_column("stage_id")
