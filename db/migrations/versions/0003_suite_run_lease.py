"""Suite runs get a worker lease (token, worker host/pid, heartbeat) and a failure reason.

Revision ID: 0003
Revises: 0002

One worker per run: a worker takes the lease with a compare-and-set UPDATE (a row lock on
PostgreSQL, the write lock on SQLite) and renews `heartbeat_at` while it works; a run whose
heartbeat is older than the lease time has no live worker. `error` holds why a run failed.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("suite_run") as batch:
        batch.add_column(sa.Column("lease_token", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("worker", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("suite_run") as batch:
        for column in ("error", "heartbeat_at", "worker", "lease_token"):
            batch.drop_column(column)
