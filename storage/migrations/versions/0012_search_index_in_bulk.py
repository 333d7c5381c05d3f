"""Contacts an import creates reach SQLite's search index in one statement per batch (written by
`SqlContactRepository.add_many`), not through the insert trigger a row at a time: the trigger
now leaves out contacts marked with the import that created them. PostgreSQL's search index
is a GIN index the database keeps itself: nothing changes there.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INSERTED = "INSERT INTO contact_search(rowid, search_text) VALUES (new.id, new.search_text); END"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER contacts_search_insert")
    op.execute(
        "CREATE TRIGGER contacts_search_insert AFTER INSERT ON contacts "
        f"WHEN new.created_by_operation_id IS NULL BEGIN {INSERTED}"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER contacts_search_insert")
    op.execute(f"CREATE TRIGGER contacts_search_insert AFTER INSERT ON contacts BEGIN {INSERTED}")
