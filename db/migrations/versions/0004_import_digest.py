"""Imported answers: a content hash per imported response, unique, so importing a file twice adds
nothing (answers asked in Parallax keep NULL, which a unique index allows many times).

Revision ID: 0004
Revises: 0003

A plain ADD COLUMN (no batch rebuild): rebuilding `response` on SQLite would drop the full-text
search triggers of revision 0002.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("response", sa.Column("import_digest", sa.String(length=64), nullable=True))
    op.create_index("uq_response_import_digest", "response", ["import_digest"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_response_import_digest", table_name="response")
    op.drop_column("response", "import_digest")
