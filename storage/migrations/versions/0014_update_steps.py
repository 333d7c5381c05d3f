"""The update ledger records what an update did, not that it was taken: `steps` counts the
units of work of the update that committed (each in its own transaction, with the row), and
`answered` says that its handling ended. A redelivery after a crash does the steps not yet done
and answers; one fully handled is ignored. Rows written before this revision were taken and, in
all likelihood, answered.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processed_updates") as batch_op:
        batch_op.add_column(sa.Column("steps", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("answered", sa.Boolean(), nullable=False, server_default=sa.true())
        )


def downgrade() -> None:
    with op.batch_alter_table("processed_updates") as batch_op:
        batch_op.drop_column("answered")
        batch_op.drop_column("steps")
