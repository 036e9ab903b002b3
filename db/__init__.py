"""Parallax storage: SQLAlchemy models, engine/session, queries and Alembic migrations."""
