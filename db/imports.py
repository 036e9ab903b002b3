"""Imported answers and battles: which of them are already stored (by content hash), the
imported suite that holds their prompts, and one bulk write of planned conversations with their
turns, answers, imported labels and votes."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from db.models import Conversation, Exchange, Label, Response, Suite, SuitePrompt, Vote
from db.vocab import LabelSource, Mode

IMPORTED_SUITE = "Imported: "  # the description of a suite made by an import starts with this


def has_answers(session: Session) -> bool:
    """True when the database holds at least one answer."""
    return session.scalar(select(Response.id).limit(1)) is not None


def source_counts(session: Session, source: str) -> tuple[int, int]:
    """(answers, answers no version of the detector has labelled) of the conversations imported
    from the origin `source` (their meta "source")."""
    detector = exists().where(Label.response_id == Response.id, Label.source.startswith(LabelSource.DETECTOR))
    stmt = (
        select(func.count(Response.id), func.count(Response.id).filter(~detector))
        .join(Exchange, Exchange.id == Response.exchange_id)
        .join(Conversation, Conversation.id == Exchange.conversation_id)
        .where(Conversation.mode == Mode.IMPORTED, Conversation.meta["source"].as_string() == source)
    )
    answers, unlabelled = session.execute(stmt).one()
    return int(answers), int(unlabelled)


def stored_digests(session: Session, digests: list[str]) -> set[str]:
    """The import digests among `digests` that are already stored."""
    found: set[str] = set()
    for start in range(0, len(digests), 900):  # stay under SQLite's bound-parameter limit
        chunk = digests[start : start + 900]
        found |= set(session.scalars(select(Response.import_digest).where(Response.import_digest.in_(chunk))))
    return found


def stored_without_detector_label(session: Session, digests: list[str]) -> list[tuple[int, str, str, str]]:
    """(response id, prompt, text, status) of the stored answers among import `digests` that no
    version of the detector has labelled (an import stopped while labelling), oldest first."""
    detector = exists().where(Label.response_id == Response.id, Label.source.startswith(LabelSource.DETECTOR))
    found = []
    for start in range(0, len(digests), 900):  # stay under SQLite's bound-parameter limit
        stmt = (
            select(Response.id, Exchange.prompt, Response.text, Response.status)
            .join(Exchange, Exchange.id == Response.exchange_id)
            .where(Response.import_digest.in_(digests[start : start + 900]), ~detector)
        )
        found += [tuple(row) for row in session.execute(stmt)]
    return sorted(found)


def find_suite(session: Session, name: str) -> Suite | None:
    """The newest suite with this name, prompts loaded, or None."""
    return session.scalars(select(Suite).where(Suite.name == name).order_by(Suite.id.desc())).first()


def is_imported_suite(suite: Suite) -> bool:
    """True for a suite that an import created (its description says so)."""
    return (suite.description or "").startswith(IMPORTED_SUITE)


def suite_for_import(session: Session, name: str, description: str, prompts: list[dict]) -> dict[str, int]:
    """Store the prompts an import needs in the imported suite `name` (created if absent; prompts
    it lacks are appended) and return {key: suite prompt id} for every prompt given.

    `prompts` are dicts of SuitePrompt fields (key, text, language, topic, kind, twin_key). The
    caller has checked that existing keys hold the same text."""
    suite = find_suite(session, name)
    if suite is None:
        suite = Suite(name=name, version="1", description=IMPORTED_SUITE + description)
        session.add(suite)
    have = {p.key: p for p in suite.prompts}
    position = len(suite.prompts)
    for prompt in prompts:
        if prompt["key"] not in have:
            row = SuitePrompt(position=position, **prompt)
            suite.prompts.append(row)
            have[prompt["key"]] = row
            position += 1
        elif prompt.get("twin_key") and not have[prompt["key"]].twin_key:
            have[prompt["key"]].twin_key = prompt["twin_key"]  # its twin arrived in a later file
    session.flush()
    return {p["key"]: have[p["key"]].id for p in prompts}


@dataclass
class NewResponse:
    """One imported answer to write."""

    slot: str
    model: str
    text: str
    digest: str
    status: str
    reasoning: str | None = None
    error_message: str | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    params: dict = field(default_factory=dict)
    label: tuple[str, str, str] | None = None  # (label, source, rule) that came with it
    id: int | None = None  # set once written


@dataclass
class NewVote:
    """An imported vote between the answers in slots a and b of its turn."""

    winner: str
    blind: bool
    identity_leaked: bool
    voter: str


@dataclass
class NewExchange:
    """One imported user turn and its answers."""

    turn_index: int
    prompt: str
    system_prompt: str | None
    language: str | None
    suite_prompt_id: int | None
    responses: list[NewResponse] = field(default_factory=list)
    vote: NewVote | None = None


@dataclass
class NewConversation:
    """One imported conversation (mode imported) and its turns."""

    title: str
    meta: dict
    exchanges: list[NewExchange] = field(default_factory=list)


def add_imported(session: Session, planned: list[NewConversation]) -> int:
    """Write planned conversations with their turns, answers, labels and votes in one flush;
    sets each NewResponse.id and returns the number of votes written."""
    rows: list[tuple[NewResponse, Response]] = []
    pending_votes: list[tuple[NewVote, Exchange, dict[str, Response]]] = []
    for plan in planned:
        conv = Conversation(mode=Mode.IMPORTED, title=plan.title[:200], meta=plan.meta)
        for ex in plan.exchanges:
            exchange = Exchange(
                turn_index=ex.turn_index,
                prompt=ex.prompt,
                system_prompt=ex.system_prompt or None,
                language=ex.language,
                suite_prompt_id=ex.suite_prompt_id,
            )
            by_slot = {}
            for new in ex.responses:
                row = Response(
                    slot=new.slot,
                    endpoint_id=new.model,
                    display_name=new.model,
                    model=new.model,
                    base_host="imported",
                    params=new.params,
                    text=new.text,
                    reasoning=new.reasoning,
                    status=new.status,
                    error_kind="imported" if new.error_message else None,
                    error_message=new.error_message,
                    latency_ms=new.latency_ms,
                    input_tokens=new.input_tokens,
                    output_tokens=new.output_tokens,
                    cost_usd=new.cost_usd,
                    import_digest=new.digest,
                )
                if new.label is not None:
                    label, source, rule = new.label
                    row.labels.append(Label(source=source, label=label, confidence=1.0, rule=rule[:100]))
                exchange.responses.append(row)
                rows.append((new, row))
                by_slot[new.slot] = row
            conv.exchanges.append(exchange)
            if ex.vote is not None:
                pending_votes.append((ex.vote, exchange, by_slot))
        session.add(conv)
    session.flush()
    for vote, exchange, by_slot in pending_votes:
        session.add(
            Vote(
                exchange_id=exchange.id,
                response_a_id=by_slot["a"].id,
                response_b_id=by_slot["b"].id,
                winner=vote.winner,
                blind=vote.blind,
                identity_leaked=vote.identity_leaked,
                voter=vote.voter[:100],
            )
        )
    session.flush()
    for new, row in rows:
        new.id = row.id
    return len(pending_votes)
