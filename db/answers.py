"""Answers in scope for analyses and suite results: one flat row per stored response with its
prompt, language, suite context and effective label."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from db.labels import effective_label, label_age
from db.models import Conversation, Exchange, Label, Response, SuitePrompt
from db.vocab import Mode


@dataclass
class AnswerScope:
    """Which stored answers an analysis looks at; dates are a half-open range [since, until)."""

    suite_run_id: int | None = None
    endpoint_ids: list[str] | None = None
    language: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def key(self) -> tuple:
        """A hashable form for caches."""
        return (self.suite_run_id, tuple(self.endpoint_ids or ()), self.language, self.since, self.until)


def _stream(session: Session, stmt) -> list:
    """Plain rows of a Core statement, fetched at once on the session's connection (the ORM layer's
    per-row work doubled the time to load 200,000 answers; batched fetching added a Python call
    per row)."""
    return session.connection().execute(stmt).all()


def _scoped(stmt, scope: AnswerScope):
    """`stmt` (which joins Response, Exchange and Conversation) narrowed to the scope.

    A blind battle nobody has voted on yet stays blind: its answers would name its models."""
    stmt = stmt.where(or_(Conversation.mode != Mode.ARENA, Conversation.meta["revealed"].as_boolean().is_(True)))
    if scope.suite_run_id is not None:
        stmt = stmt.where(Conversation.suite_run_id == scope.suite_run_id)
    if scope.endpoint_ids:
        stmt = stmt.where(Response.endpoint_id.in_(scope.endpoint_ids))
    if scope.language:
        stmt = stmt.where(Exchange.language == scope.language)
    if scope.since:
        stmt = stmt.where(Response.created_at >= scope.since)
    if scope.until:
        stmt = stmt.where(Response.created_at < scope.until)
    return stmt


def _joined(stmt):
    return stmt.join(Exchange, Exchange.id == Response.exchange_id).join(
        Conversation, Conversation.id == Exchange.conversation_id
    )


def scope_answers(session: Session, scope: AnswerScope) -> list[dict]:
    """Every answer in scope, oldest first, leaving out blind battles not yet voted on (revealed),
    as a dict with these keys:

    response_id, endpoint_id, model_name (the display name), text, status, exchange_id, prompt,
    language (en when unknown), suite_prompt_id, topic ('(chat)' outside suites), twin_key,
    kind ('chat' outside suites), prompt_key, control_key, suite_run_id, label (effective, or None),
    label_source (who gave it, or None) and labels ({source: label} of every source, oldest first).
    Two queries whatever the size (answers, then their labels), so a million rows load in seconds."""
    stmt = _scoped(
        _joined(
            select(
                Response.id,
                Response.endpoint_id,
                Response.display_name,
                Response.text,
                Response.status,
                Exchange.id,
                Exchange.prompt,
                Exchange.language,
                Exchange.suite_prompt_id,
                SuitePrompt.topic,
                SuitePrompt.twin_key,
                SuitePrompt.kind,
                SuitePrompt.key,
                SuitePrompt.control_key,
                Conversation.suite_run_id,
            )
        )
        .outerjoin(SuitePrompt, SuitePrompt.id == Exchange.suite_prompt_id)
        .order_by(Response.id),
        scope,
    )
    rows = [
        {
            "response_id": r[0],
            "endpoint_id": r[1],
            "model_name": r[2],
            "text": r[3] or "",
            "status": r[4],
            "exchange_id": r[5],
            "prompt": r[6],
            "language": r[7] or "en",
            "suite_prompt_id": r[8],
            "topic": r[9] or "(chat)",
            "twin_key": r[10],
            "kind": r[11] or "chat",
            "prompt_key": r[12],
            "control_key": r[13],
            "suite_run_id": r[14],
            "label": None,
            "label_source": None,
            "labels": {},
        }
        for r in _stream(session, stmt)
    ]
    by_id = {row["response_id"]: row for row in rows}
    for rid, labs in scope_labels(session, scope).items():
        if rid in by_id:  # one label is the effective one; several are ranked
            chosen = labs[0] if len(labs) == 1 else effective_label(labs)
            by_id[rid]["label"], by_id[rid]["label_source"] = chosen.label, chosen.source
            by_id[rid]["labels"] = {lab.source: lab.label for lab in sorted(labs, key=label_age)}
    return rows


def scope_labels(session: Session, scope: AnswerScope) -> dict[int, list]:
    """Every label of the answers in scope, grouped by response id, in one query (light rows with
    the fields `effective_label` ranks by)."""
    stmt = _scoped(
        _joined(
            select(Label.response_id, Label.source, Label.label, Label.created_at, Label.id).join(
                Response, Response.id == Label.response_id
            )
        ),
        scope,
    )
    found: dict[int, list] = {}
    for r in _stream(session, stmt):
        found.setdefault(r[0], []).append(r)  # a Row has the named fields effective_label reads
    return found


def scope_texts(session: Session, scope: AnswerScope) -> list[str]:
    """The non-blank answer texts in scope, oldest first (what the embedder needs)."""
    stmt = _scoped(_joined(select(Response.text)), scope).order_by(Response.id)
    return [t for (t,) in _stream(session, stmt) if t and t.strip()]


def answers_data_version(session: Session) -> tuple:
    """Changes whenever answers or labels are added or corrected (a cache key for analyses)."""
    responses = session.execute(select(func.count(Response.id), func.max(Response.id))).one()
    labels = session.execute(select(func.count(Label.id), func.max(Label.created_at))).one()
    return tuple(responses) + (labels[0], str(labels[1]))
