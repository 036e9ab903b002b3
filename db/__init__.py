"""Parallax storage: every SQL statement of the project lives in this package.

- `models` (SQLAlchemy tables), `vocab` (the shared words: statuses, labels, label sources,
  modes, winners, run states), `config` (paths and limits from the environment), `engine`
  (engine, sessions, Alembic migrations on first open);
- queries by entity: `conversations` (conversations, exchanges, responses, history search),
  `votes` (votes and thumbs), `labels`, `answers` (flat rows for analyses), `suites` (suites,
  prompts, runs), `embeddings` (the vector cache).

Who opens a transaction: query functions take an open `Session`, may `flush`, and never commit,
roll back or open a session of their own. The caller in lib/ opens one transaction per unit of
work with `db.engine.session_scope()` (commit on success, roll back on any error). views/ and
commands/ never import this package.
"""
