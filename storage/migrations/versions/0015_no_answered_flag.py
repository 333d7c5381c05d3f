"""An update is no longer marked answered: a redelivery is answered again (its committed steps
roll back), so the flag cost every update a write and bought nothing. An update that changes
nothing leaves no row at all.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processed_updates") as batch_op:
        batch_op.drop_column("answered")


def downgrade() -> None:
    with op.batch_alter_table("processed_updates") as batch_op:
        batch_op.add_column(
            sa.Column("answered", sa.Boolean(), nullable=False, server_default=sa.true())
        )
