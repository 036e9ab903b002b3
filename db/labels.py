"""Labels: each source (detector version, human, judge, import) gives a response at most one label;
the effective label is the human one where it exists, else the detector's, else any other."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from db.models import Exchange, Label, Response, utcnow
from db.vocab import LabelSource, Status


def set_label(
    session: Session, response_id: int, label: str, source: str, confidence: float = 1.0, rule: str = ""
) -> Label:
    """Store (or replace) the label one source gives a response."""
    row = session.scalar(select(Label).where(Label.response_id == response_id, Label.source == source))
    if row is None:
        row = Label(response_id=response_id, source=source)
        session.add(row)
    row.label, row.confidence, row.rule, row.created_at = label, confidence, rule, utcnow()
    session.flush()
    return row


def label_age(lab: Label) -> tuple:
    """Sort key: older labels first."""
    return lab.created_at or datetime.min, lab.id or 0


def effective_label(labels: Iterable[Label]) -> Label | None:
    """The label that counts: a human one, else the detector's newest, else any other (a judge)."""

    def rank(lab: Label) -> tuple:
        return LabelSource.priority(lab.source), lab.created_at or datetime.min, lab.id or 0

    labels = list(labels)
    return max(labels, key=rank) if labels else None


def labels_by_response(session: Session, response_ids: list[int]) -> dict[int, list[Label]]:
    """Every label of these responses, grouped by response id."""
    found: dict[int, list[Label]] = {}
    for start in range(0, len(response_ids), 900):  # stay under SQLite's bound-parameter limit
        chunk = response_ids[start : start + 900]
        for lab in session.scalars(select(Label).where(Label.response_id.in_(chunk))):
            found.setdefault(lab.response_id, []).append(lab)
    return found


def responses_without_label(
    session: Session, source: str, limit: int | None = None, after_id: int = 0
) -> list[Response]:
    """Responses with an id above `after_id` that have no label from `source` yet, oldest first,
    with their exchange loaded."""
    labelled = select(Label.response_id).where(Label.source == source)
    stmt = (
        select(Response)
        .options(selectinload(Response.exchange))
        .where(Response.id.not_in(labelled), Response.id > after_id)
        .order_by(Response.id)
    )
    if limit:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def response_state(session: Session, response_id: int) -> tuple[str, str] | None:
    """(status, text) of one response, or None if there is none."""
    row = session.execute(select(Response.status, Response.text).where(Response.id == response_id)).first()
    return (row[0], row[1] or "") if row else None


def human_labels(session: Session, labels: tuple[str, ...]) -> list[tuple[str, str | None, str, str, str]]:
    """(prompt, language, answer, endpoint id, label) for every human label among `labels` on a
    finished answer with text (a partial or empty text is no training row), oldest first."""
    stmt = (
        select(Exchange.prompt, Exchange.language, Response.text, Response.endpoint_id, Label.label)
        .join(Response, Response.exchange_id == Exchange.id)
        .join(Label, Label.response_id == Response.id)
        .where(
            Label.source == LabelSource.HUMAN,
            Label.label.in_(labels),
            Response.status == Status.OK,
            func.length(func.trim(func.coalesce(Response.text, ""))) > 0,  # no text: no training row
        )
        .order_by(Label.id)
    )
    return [tuple(row) for row in session.execute(stmt)]
