"""Names in one spelling: imported model names, imported label origins and suite prompt topics as
imports and suite files store them since this revision (`lib.safety.one_line_name`).

Revision ID: 0005
Revises: 0004

Before it, "Llama\\u00a03" (a no-break space), "Cafe\\u0301-7B" (a decomposed accent),
"gpt\\u20114o" (a non-breaking hyphen), "Ｑｗｅｎ２．５" (full-width letters) and "𝐠𝐩𝐭-4o"
(mathematical bold) were stored as written (the release just before it already composed accents
and made spaces and hyphens one): each was a second model beside "Llama 3", "Café-7B", "gpt-4o"
and "Qwen2.5", printed the same, with its own rates and rating. This rewrites the stored names in
the one spelling, so the old rows and new imports are one model. An import digest is left as it
is: imports also look up the digests the older spellings gave (`AnswerRecord.digests`), so a file
imported before adds nothing again. A response's column key (`slot`) is left too: it only tells
columns apart inside its conversation.

The spelling is written out here, not imported, so that this revision does what it did when it was
written whatever `one_line_name` becomes (tests/test_safety.py checks the two agree today).
"""

import re
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_SPACES = re.compile("[ \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_HYPHENS = re.compile("[\u2010-\u2012\u2212\ufe63]")
_FULL_WIDTH = {
    code: unicodedata.normalize("NFKC", chr(code))
    for code in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B), 0xFF0D, 0xFF0E, 0xFF3F]
}
_FULL_WIDTH |= {  # the mathematical alphanumeric symbols that are styled ASCII letters and digits
    code: folded
    for code in range(0x1D400, 0x1D800)
    if (folded := unicodedata.normalize("NFKC", chr(code))).isascii() and folded.isalnum()
}
DETECTOR = "parallax-deflection"  # the built-in detector's label sources start so: its rules are not names

response = sa.table(
    "response",
    sa.column("id", sa.Integer),
    sa.column("endpoint_id", sa.String),
    sa.column("display_name", sa.String),
    sa.column("model", sa.String),
    sa.column("import_digest", sa.String),
)
label = sa.table(
    "label",
    sa.column("id", sa.Integer),
    sa.column("response_id", sa.Integer),
    sa.column("source", sa.String),
    sa.column("rule", sa.String),
)
suite_prompt = sa.table("suite_prompt", sa.column("id", sa.Integer), sa.column("topic", sa.String))


def one_spelling(text: str | None) -> str | None:
    """`text` in the one spelling of names: full-width Latin letters, digits, "-", "." and "_" and
    mathematical letters as ASCII, then NFC, runs of spaces one space, hyphens that print as "-"
    "-", stripped."""
    if text is None:
        return None
    text = unicodedata.normalize("NFC", text.translate(_FULL_WIDTH))
    return _HYPHENS.sub("-", _SPACES.sub(" ", text)).strip()


def upgrade() -> None:
    conn = op.get_bind()
    imported = conn.execute(
        sa.select(response.c.id, response.c.endpoint_id, response.c.display_name, response.c.model).where(
            response.c.import_digest.is_not(None)
        )
    )
    for row_id, endpoint_id, display_name, model in imported.fetchall():
        names = {"endpoint_id": (endpoint_id, 100), "display_name": (display_name, 200), "model": (model, 200)}
        changed = {k: one_spelling(v)[:n] for k, (v, n) in names.items() if v and one_spelling(v)[:n] != v}
        if changed:
            conn.execute(sa.update(response).where(response.c.id == row_id).values(**changed))
    origins = conn.execute(
        sa.select(label.c.id, label.c.rule)
        .join(response, response.c.id == label.c.response_id)
        .where(response.c.import_digest.is_not(None), ~label.c.source.startswith(DETECTOR))
    )
    for row_id, rule in origins.fetchall():
        if rule and one_spelling(rule)[:100] != rule:
            conn.execute(sa.update(label).where(label.c.id == row_id).values(rule=one_spelling(rule)[:100]))
    for row_id, topic in conn.execute(sa.select(suite_prompt.c.id, suite_prompt.c.topic)).fetchall():
        if topic and one_spelling(topic)[:100] != topic:
            conn.execute(
                sa.update(suite_prompt).where(suite_prompt.c.id == row_id).values(topic=one_spelling(topic)[:100])
            )


def downgrade() -> None:
    """Nothing to undo that could be undone: the names as first written are not kept."""
