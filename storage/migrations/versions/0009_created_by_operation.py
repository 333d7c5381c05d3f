"""Contacts an import creates are marked with its operation, instead of one operation item
each: undoing the import removes those marked and never changed since (still at version 1).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No index: only undo looks contacts up by it, and reading the table once is quick enough.
    op.add_column("contacts", sa.Column("created_by_operation_id", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE contacts SET created_by_operation_id = ("
        "SELECT operation_id FROM operation_items "
        "WHERE operation_items.contact_id = contacts.id AND operation_items.created) "
        "WHERE id IN (SELECT contact_id FROM operation_items WHERE created)"
    )
    op.execute("DELETE FROM operation_items WHERE created")
    # Plain ALTER TABLE (SQLite 3.35+): a batch rebuild would copy the table for one column.
    op.execute("ALTER TABLE operation_items DROP COLUMN created")


def downgrade() -> None:
    op.add_column(
        "operation_items",
        sa.Column("created", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute(
        "INSERT INTO operation_items (operation_id, contact_id, created, after_version) "
        "SELECT created_by_operation_id, id, TRUE, 1 FROM contacts "
        "WHERE created_by_operation_id IS NOT NULL"
    )
    op.execute("ALTER TABLE contacts DROP COLUMN created_by_operation_id")
