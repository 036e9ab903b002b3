"""Suites (named, versioned prompt sets), their prompts, and suite runs: lookups, writes, the
counts a run's progress is read from, and the run's worker lease.

The lease is a compare-and-set UPDATE on the run's row (`lease_token` must still be what the
taker saw): on PostgreSQL the UPDATE takes the row lock and a concurrent taker re-checks the
condition after the first commits; on SQLite the UPDATE takes the database's write lock. Either
way exactly one of two concurrent takers changes the row."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from db.conversations import add_exchange, create_conversation
from db.models import Conversation, Exchange, Label, Response, Suite, SuitePrompt, SuiteRun, utcnow
from db.vocab import Mode, RunStatus, Status


def suite_names(session: Session) -> list[str]:
    """Names of the stored suites, sorted."""
    return sorted(set(session.scalars(select(Suite.name))))


def suite_name_versions(session: Session) -> list[tuple[str, str]]:
    """(name, version) of every stored suite, by name, each name's oldest version first."""
    return list(session.execute(select(Suite.name, Suite.version).order_by(Suite.name, Suite.id)).tuples())


def suite_versions(session: Session, name: str) -> list[str]:
    """The stored versions of one suite, oldest first."""
    return list(session.scalars(select(Suite.version).where(Suite.name == name).order_by(Suite.id)))


def list_suites(session: Session) -> list[Suite]:
    """Every stored suite with its prompts loaded, by name then version."""
    return list(session.scalars(select(Suite).options(selectinload(Suite.prompts)).order_by(Suite.name, Suite.id)))


def get_suite(session: Session, name: str, version: str) -> Suite | None:
    """The suite with exactly this name and version, or None."""
    return session.scalar(select(Suite).where(Suite.name == name, Suite.version == version))


def get_suite_by_id(session: Session, suite_id: int) -> Suite | None:
    """One suite by id, or None."""
    return session.get(Suite, suite_id)


def find_suite(session: Session, name: str) -> Suite | None:
    """The newest version of a suite by name (or exactly 'name@version')."""
    name, at, version = name.partition("@")
    stmt = select(Suite).where(Suite.name == name)
    if at:  # 'name@' names the version '' (none has it), not the newest
        stmt = stmt.where(Suite.version == version)
    return session.scalars(stmt.order_by(Suite.id.desc())).first()


def add_suite(session: Session, name: str, version: str, description: str, prompts: list[dict]) -> Suite:
    """Store a suite; `prompts` are dicts of SuitePrompt fields (key, text, language, topic, kind,
    twin_key, control_key), stored in that order."""
    row = Suite(name=name, version=version, description=description)
    row.prompts = [SuitePrompt(position=i, **p) for i, p in enumerate(prompts)]
    session.add(row)
    session.flush()
    return row


def get_run(session: Session, run_id: int) -> SuiteRun | None:
    """One suite run, or None."""
    return session.get(SuiteRun, run_id)


def latest_run_with_signature(session: Session, signature: str) -> SuiteRun | None:
    """The newest run with this signature (same suite, endpoints and parameters), or None."""
    stmt = select(SuiteRun).where(SuiteRun.signature == signature).order_by(SuiteRun.id.desc())
    return session.scalars(stmt).first()


def add_run(
    session: Session, suite_id: int, signature: str, endpoints: list[str], params: dict, samples: int
) -> SuiteRun:
    """A new pending run."""
    run = SuiteRun(suite_id=suite_id, signature=signature, endpoints=endpoints, params=params, samples=samples)
    run.status = RunStatus.PENDING
    session.add(run)
    session.flush()
    return run


def list_runs(session: Session, limit: int | None = None) -> list[tuple[SuiteRun, Suite]]:
    """(run, its suite with prompts loaded), newest first."""
    stmt = (
        select(SuiteRun, Suite)
        .join(Suite, Suite.id == SuiteRun.suite_id)
        .options(selectinload(Suite.prompts))
        .order_by(SuiteRun.id.desc())
    )
    if limit:
        stmt = stmt.limit(limit)
    return [(run, suite) for run, suite in session.execute(stmt)]


def settled_items(session: Session, run_id: int) -> set[tuple[int, int, str]]:
    """(suite prompt id, sample index, endpoint id) of the run's items that need no retry."""
    rows = session.execute(
        select(Exchange.suite_prompt_id, Exchange.sample_index, Response.endpoint_id)
        .join(Conversation, Conversation.id == Exchange.conversation_id)
        .join(Response, Response.exchange_id == Exchange.id)
        .where(Conversation.suite_run_id == run_id, Response.status.in_(Status.SETTLED))
    )
    return {tuple(r) for r in rows}


def _latest_answers(run_ids: list[int]):
    """The id of each item's newest answer per endpoint in these runs (a failure that a resume
    answered since is not the item's state)."""
    return (
        select(func.max(Response.id))
        .join(Exchange, Exchange.id == Response.exchange_id)
        .join(Conversation, Conversation.id == Exchange.conversation_id)
        .where(Conversation.suite_run_id.in_(run_ids))
        .group_by(Response.exchange_id, Response.endpoint_id)
    )


def status_counts(session: Session, run_ids: list[int]) -> dict[int, list[tuple[str, str, int]]]:
    """Per run: (endpoint id, status of each item's newest answer, distinct items) — one query for
    many runs."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(Conversation.suite_run_id, Response.endpoint_id, Response.status, func.count(func.distinct(Exchange.id)))
        .join(Exchange, Exchange.id == Response.exchange_id)
        .join(Conversation, Conversation.id == Exchange.conversation_id)
        .where(Response.id.in_(_latest_answers(run_ids)))
        .group_by(Conversation.suite_run_id, Response.endpoint_id, Response.status)
    )
    found: dict[int, list[tuple[str, str, int]]] = {run_id: [] for run_id in run_ids}
    for run_id, endpoint_id, status, n in rows:
        found[run_id].append((endpoint_id, status, n))
    return found


def last_errors(session: Session, run_id: int) -> dict[str, str]:
    """Per endpoint of a run: the error message of its newest failed answer among the items still
    failing (the reason a resume would meet again), for the endpoints that have one."""
    rows = session.execute(
        select(Response.endpoint_id, Response.error_message)
        .where(Response.id.in_(_latest_answers([run_id])), Response.status == Status.ERROR)
        .order_by(Response.id)
    )
    return {endpoint_id: message or "" for endpoint_id, message in rows}


def exchange_for(session: Session, run: SuiteRun, prompt: SuitePrompt, sample: int) -> int:
    """The id of the run's exchange for (prompt, sample), created with its conversation if absent."""
    found = session.scalar(
        select(Exchange.id)
        .join(Conversation, Conversation.id == Exchange.conversation_id)
        .where(
            Conversation.suite_run_id == run.id, Exchange.suite_prompt_id == prompt.id, Exchange.sample_index == sample
        )
    )
    if found is not None:
        return found
    conv = create_conversation(
        session, mode=Mode.SUITE, title=prompt.text[:200], meta={"suite_prompt": prompt.key}, suite_run_id=run.id
    )
    return add_exchange(session, conv.id, prompt.text, None, prompt.language, prompt.id, sample).id


def get_prompt(session: Session, prompt_id: int) -> SuitePrompt | None:
    """One suite prompt, or None."""
    return session.get(SuitePrompt, prompt_id)


def db_now(session: Session) -> datetime:
    """The database's clock as naive UTC, so workers on several hosts agree on lease times
    (SQLite is always on this machine: its clock is ours)."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.timezone("UTC", func.now())))
    return utcnow()


def lock_suite_runs(session: Session, suite_id: int) -> None:
    """Serialise run creation for one suite until the transaction ends: a no-op UPDATE takes the
    suite row's lock on PostgreSQL and the write lock on SQLite (issue it before any other write)."""
    session.execute(update(Suite).where(Suite.id == suite_id).values(id=Suite.id))


def take_lease(session: Session, run_id: int, seen_token: str | None, token: str, worker: str, now: datetime) -> bool:
    """Give the run's lease to `token` if it is still held by `seen_token` (None: free); True if taken."""
    held = SuiteRun.lease_token.is_(None) if seen_token is None else SuiteRun.lease_token == seen_token
    result = session.execute(
        update(SuiteRun)
        .where(SuiteRun.id == run_id, held)
        .values(lease_token=token, worker=worker, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def renew_lease(session: Session, run_id: int, token: str, now: datetime) -> str | None:
    """Renew the lease held by `token`; the run's stored status, or None when the lease is lost."""
    result = session.execute(
        update(SuiteRun)
        .where(SuiteRun.id == run_id, SuiteRun.lease_token == token)
        .values(heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return None
    return session.scalar(select(SuiteRun.status).where(SuiteRun.id == run_id))


def release_lease(session: Session, run_id: int, token: str) -> None:
    """Free the lease if `token` still holds it (the worker name stays, for the record)."""
    session.execute(
        update(SuiteRun)
        .where(SuiteRun.id == run_id, SuiteRun.lease_token == token)
        .values(lease_token=None, heartbeat_at=None)
        .execution_options(synchronize_session=False)
    )


def unlabelled_run_answers(session: Session, run_id: int, source: str) -> list[tuple[int, str, str, str]]:
    """(response id, prompt, text, status) of the run's answers with no label from `source`, oldest
    first: those stored before a worker died between storing and labelling them."""
    labelled = select(Label.response_id).where(Label.source == source)
    rows = session.execute(
        select(Response.id, Exchange.prompt, Response.text, Response.status)
        .join(Exchange, Exchange.id == Response.exchange_id)
        .join(Conversation, Conversation.id == Exchange.conversation_id)
        .where(Conversation.suite_run_id == run_id, Response.id.not_in(labelled))
        .order_by(Response.id)
    )
    return [tuple(r) for r in rows]
