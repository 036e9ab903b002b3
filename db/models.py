"""SQLAlchemy 2.0 models: conversations, exchanges (user turns), responses, votes, thumbs, labels,
embeddings, suites, suite prompts and suite runs. Schema changes go through Alembic migrations
(db/migrations); the words stored in string columns are defined in db/vocab.py."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship

from db.vocab import Mode, RunStatus


def utcnow() -> datetime:
    """Timezone-aware now, stored as UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base for every Parallax table."""


CUT = {"cut": True}  # column info: text kept as far as the column is wide, a count only if it fits (`_fit`)
MAX_INT = 2**31 - 1  # PostgreSQL's integer


@event.listens_for(Base, "before_insert", propagate=True)
@event.listens_for(Base, "before_update", propagate=True)
def _fit(mapper: Mapper, connection, row: Base) -> None:
    """Cut text meant for reading (a provider's finish reason, a host, a title, a label's rule) to
    the width of its column, and drop a count that no integer column holds (a provider's token
    counts), for columns marked `info=CUT`: PostgreSQL refuses a wider value, and with it the whole
    write — every model's answer in a fan-out. Keys are never cut: what they are made from is
    checked where it is read (endpoint ids, suite ids, voters)."""
    for prop in mapper.column_attrs:
        column = prop.columns[0]
        if not column.info.get("cut"):
            continue
        value = getattr(row, prop.key)
        if isinstance(column.type, Integer) and isinstance(value, int) and not -MAX_INT <= value <= MAX_INT:
            setattr(row, prop.key, None)  # a count no column holds: unknown
        elif isinstance(value, str) and column.type.length and len(value) > column.type.length:
            setattr(row, prop.key, value[: column.type.length])


class Conversation(Base):
    """One side-by-side session, blind battle, or suite item."""

    __tablename__ = "conversation"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), default=Mode.COMPARE)  # one of Mode.ALL
    title: Mapped[str] = mapped_column(String(200), default="", info=CUT)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    suite_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("suite_run.id", ondelete="SET NULL"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    exchanges: Mapped[list[Exchange]] = relationship(
        back_populates="conversation", order_by="Exchange.turn_index", cascade="all, delete-orphan"
    )


class Exchange(Base):
    """One user turn in a conversation."""

    __tablename__ = "exchange"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversation.id", ondelete="CASCADE"), index=True)
    turn_index: Mapped[int] = mapped_column(Integer, default=0)
    prompt: Mapped[str] = mapped_column(Text)
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)
    suite_prompt_id: Mapped[int | None] = mapped_column(
        ForeignKey("suite_prompt.id", ondelete="SET NULL"), nullable=True, index=True
    )
    sample_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    conversation: Mapped[Conversation] = relationship(back_populates="exchanges")
    responses: Mapped[list[Response]] = relationship(
        back_populates="exchange", order_by="Response.id", cascade="all, delete-orphan"
    )


class Response(Base):
    """One model's answer to one exchange, with a snapshot of what was called and its metrics."""

    __tablename__ = "response"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchange.id", ondelete="CASCADE"), index=True)
    slot: Mapped[str] = mapped_column(String(64))  # column key: endpoint id, or a/b in arena
    endpoint_id: Mapped[str] = mapped_column(String(100), index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="", info=CUT)
    model: Mapped[str] = mapped_column(String(200), default="", info=CUT)
    base_host: Mapped[str] = mapped_column(String(200), default="", info=CUT)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    text: Mapped[str] = mapped_column(Text, default="")
    reasoning: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16), index=True)  # ok|error|blocked|interrupted
    error_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    finish_reason: Mapped[str | None] = mapped_column(String(32), nullable=True, info=CUT)
    latency_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True, info=CUT)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True, info=CUT)
    tokens_counted: Mapped[bool] = mapped_column(Boolean, default=False)
    cost_usd: Mapped[float | None] = mapped_column(Float, nullable=True)
    # content hash of an imported answer (None for answers asked here): importing it again adds nothing
    import_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    exchange: Mapped[Exchange] = relationship(back_populates="responses")
    labels: Mapped[list[Label]] = relationship(back_populates="response", cascade="all, delete-orphan")


class Vote(Base):
    """A preference between two responses to the same exchange."""

    __tablename__ = "vote"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("exchange.id", ondelete="CASCADE"), index=True)
    response_a_id: Mapped[int] = mapped_column(ForeignKey("response.id", ondelete="CASCADE"))
    response_b_id: Mapped[int] = mapped_column(ForeignKey("response.id", ondelete="CASCADE"))
    winner: Mapped[str] = mapped_column(String(16))  # a | b | tie | both_bad
    blind: Mapped[bool] = mapped_column(Boolean, default=False)
    identity_leaked: Mapped[bool] = mapped_column(Boolean, default=False)
    voter: Mapped[str] = mapped_column(String(100), default="local")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Thumb(Base):
    """A single-answer rating (thumbs up or down), used for unpaired (KTO) exports."""

    __tablename__ = "thumb"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("response.id", ondelete="CASCADE"), index=True)
    up: Mapped[bool] = mapped_column(Boolean)
    voter: Mapped[str] = mapped_column(String(100), default="local")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Label(Base):
    """A deflection label for a response; a human label wins over any automatic one."""

    __tablename__ = "label"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("response.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(100))  # detector name+version, or "human"
    label: Mapped[str] = mapped_column(String(16), index=True)
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    rule: Mapped[str] = mapped_column(String(100), default="", info=CUT)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    response: Mapped[Response] = relationship(back_populates="labels")
    __table_args__ = (UniqueConstraint("response_id", "source", name="uq_label_response_source"),)


class Embedding(Base):
    """A cached embedding of one text by one embedder, never computed twice."""

    __tablename__ = "embedding"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    embedder: Mapped[str] = mapped_column(String(300))
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    __table_args__ = (UniqueConstraint("content_hash", "embedder", name="uq_embedding_hash"),)


class Suite(Base):
    """A named, versioned set of prompts."""

    __tablename__ = "suite"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(32), default="1")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    prompts: Mapped[list[SuitePrompt]] = relationship(
        back_populates="suite", order_by="SuitePrompt.position", cascade="all, delete-orphan"
    )
    __table_args__ = (UniqueConstraint("name", "version", name="uq_suite_name_version"),)


class SuitePrompt(Base):
    """One prompt of a suite, linked to its translation (twin) and its control."""

    __tablename__ = "suite_prompt"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suite_id: Mapped[int] = mapped_column(ForeignKey("suite.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    key: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    topic: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(16), default="probe")  # probe | control | general
    twin_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    control_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    suite: Mapped[Suite] = relationship(back_populates="prompts")
    __table_args__ = (UniqueConstraint("suite_id", "key", name="uq_suite_prompt_key"),)


class SuiteRun(Base):
    """One run of a suite against endpoints; resumable by its signature. One worker at a time
    holds its lease (`lease_token`, renewed in `heartbeat_at`); `error` says why a run failed."""

    __tablename__ = "suite_run"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    suite_id: Mapped[int] = mapped_column(ForeignKey("suite.id", ondelete="CASCADE"), index=True)
    signature: Mapped[str] = mapped_column(String(64), index=True)
    endpoints: Mapped[list] = mapped_column(JSON, default=list)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    samples: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.PENDING)  # one of RunStatus
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(300), nullable=True, info=CUT)  # "host pid N"
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


Index("ix_response_exchange_endpoint", Response.exchange_id, Response.endpoint_id)
Index("uq_response_import_digest", Response.import_digest, unique=True)
