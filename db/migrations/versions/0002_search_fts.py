"""Full-text search over prompts and answers (SQLite FTS5 with the trigram tokenizer).

Revision ID: 0002
Revises: 0001

Exchanges are indexed under rowid -id and responses under rowid +id, so triggers keep the
index in step without scanning it. On other databases (or a SQLite without FTS5) nothing is
created and history search falls back to LIKE.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TRIGGERS = [
    """CREATE TRIGGER search_exchange_ai AFTER INSERT ON exchange BEGIN
         INSERT INTO search_fts(rowid, body, conversation_id)
         VALUES (-new.id, new.prompt, new.conversation_id); END""",
    """CREATE TRIGGER search_exchange_ad AFTER DELETE ON exchange BEGIN
         DELETE FROM search_fts WHERE rowid = -old.id; END""",
    """CREATE TRIGGER search_response_ai AFTER INSERT ON response BEGIN
         INSERT INTO search_fts(rowid, body, conversation_id)
         VALUES (new.id, new.text,
                 (SELECT conversation_id FROM exchange WHERE id = new.exchange_id)); END""",
    """CREATE TRIGGER search_response_au AFTER UPDATE OF text ON response BEGIN
         DELETE FROM search_fts WHERE rowid = old.id;
         INSERT INTO search_fts(rowid, body, conversation_id)
         VALUES (new.id, new.text,
                 (SELECT conversation_id FROM exchange WHERE id = new.exchange_id)); END""",
    """CREATE TRIGGER search_response_ad AFTER DELETE ON response BEGIN
         DELETE FROM search_fts WHERE rowid = old.id; END""",
]


def _fts5_available(bind) -> bool:
    if bind.dialect.name != "sqlite":
        return False
    try:
        bind.exec_driver_sql("CREATE VIRTUAL TABLE temp._fts_probe USING fts5(x, tokenize='trigram')")
        bind.exec_driver_sql("DROP TABLE temp._fts_probe")
        return True
    except sa.exc.OperationalError:
        return False


def upgrade() -> None:
    bind = op.get_bind()
    if not _fts5_available(bind):
        return
    op.execute(
        "CREATE VIRTUAL TABLE search_fts USING fts5(body, conversation_id UNINDEXED, "
        "tokenize='trigram')"
    )
    for trigger in TRIGGERS:
        op.execute(trigger)
    op.execute(
        "INSERT INTO search_fts(rowid, body, conversation_id) "
        "SELECT -id, prompt, conversation_id FROM exchange"
    )
    op.execute(
        "INSERT INTO search_fts(rowid, body, conversation_id) "
        "SELECT r.id, r.text, e.conversation_id FROM response r JOIN exchange e ON e.id = r.exchange_id"
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for name in ["search_exchange_ai", "search_exchange_ad", "search_response_ai",
                 "search_response_au", "search_response_ad"]:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS search_fts")
