"""Suite runs: every (prompt, sample, endpoint) of a suite, stored as ordinary responses.

A run is identified by a signature of its suite, endpoints and parameters, so asking for the
same run again resumes it instead of paying twice. Each finished answer is committed on its
own, so a crash or a kill loses only what was in flight; resuming redoes exactly the items
that have no `ok` or `blocked` answer yet (failed ones are retried). Concurrency is limited per
endpoint (the embedded server gains nothing from parallel requests, so it gets one). A run is
cancelled by setting its status to `cancelling`; the worker notices within a second."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import openai
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import config, repo
from db.engine import session_scope
from db.models import Conversation, Exchange, Response, Suite, SuitePrompt, SuiteRun, utcnow
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome, build_messages, stream_chat

DONE_STATUSES = ("ok", "blocked")


class RunError(ValueError):
    """A run that cannot start (unknown suite, no prompts for the language, zero samples...)."""


@dataclass
class RunSpec:
    """What to run: which prompts, which endpoints, how many samples, which parameters."""

    suite: str
    endpoints: list[str]
    samples: int = 1
    temperature: float | None = None
    max_tokens: int | None = None
    language: str | None = None
    topic: str | None = None
    limit: int | None = None
    concurrency: int = 4

    def signature(self, suite_id: int) -> str:
        """Same suite, endpoints and parameters → same signature (concurrency does not count)."""
        body = {k: v for k, v in asdict(self).items() if k not in ("concurrency", "suite")}
        body["endpoints"] = sorted(self.endpoints)
        return hashlib.sha256(json.dumps({"suite_id": suite_id, **body}, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class Progress:
    """Live counts of one run."""

    total: int
    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        """Items with an answer (ok or blocked)."""
        return sum(self.done.values())


def plan_prompts(session: Session, suite: Suite, spec: RunSpec) -> list[SuitePrompt]:
    """The suite's prompts after the language/topic filters and the --limit."""
    prompts = [
        p
        for p in suite.prompts
        if (spec.language is None or p.language == spec.language) and (spec.topic is None or p.topic == spec.topic)
    ]
    return prompts[: spec.limit] if spec.limit else prompts


def validate(spec: RunSpec, endpoints: dict[str, Endpoint]) -> None:
    """Reject specs a user can fix before anything is written."""
    if spec.samples < 1:
        raise RunError("samples must be at least 1")
    if spec.concurrency < 1:
        raise RunError("concurrency must be at least 1")
    if spec.limit is not None and spec.limit < 1:
        raise RunError("--limit must be at least 1")
    if spec.language not in (None, "en", "zh"):
        raise RunError("language must be en or zh")
    if not spec.endpoints:
        raise RunError("choose at least one model")
    unknown = [e for e in spec.endpoints if e not in endpoints]
    if unknown:
        raise RunError(f"unknown model(s) {', '.join(unknown)}. Known: {', '.join(endpoints)}")


def create_or_resume(
    session: Session, spec: RunSpec, endpoints: dict[str, Endpoint], new: bool = False
) -> tuple[SuiteRun, bool]:
    """The run for this spec: the earlier one with the same signature, unless `new`. (run, resumed)."""
    from lib.suites.definitions import ensure_builtin, find_suite

    validate(spec, endpoints)
    ensure_builtin(session)
    suite = find_suite(session, spec.suite)
    if suite is None:
        names = sorted(set(session.scalars(select(Suite.name))))
        raise RunError(f"unknown suite {spec.suite!r}. Known: {', '.join(names)}")
    if not plan_prompts(session, suite, spec):
        raise RunError(
            f"suite {suite.name!r} has no prompts for language={spec.language or 'any'}, topic={spec.topic or 'any'}"
        )
    signature = spec.signature(suite.id)
    if not new:
        earlier = session.scalars(
            select(SuiteRun).where(SuiteRun.signature == signature).order_by(SuiteRun.id.desc())
        ).first()
        if earlier is not None:
            return earlier, True
    run = SuiteRun(
        suite_id=suite.id,
        signature=signature,
        endpoints=list(spec.endpoints),
        params=asdict(spec),
        samples=spec.samples,
        status="pending",
    )
    session.add(run)
    session.flush()
    return run, False


def spec_of(run: SuiteRun) -> RunSpec:
    """The spec a run was created with."""
    known = {f for f in RunSpec.__dataclass_fields__}
    return RunSpec(**{k: v for k, v in run.params.items() if k in known})


def pending_items(session: Session, run: SuiteRun) -> tuple[list[tuple[SuitePrompt, int, str]], int]:
    """(items still to do, total items) for a run; an item is (prompt, sample, endpoint id)."""
    suite = session.get(Suite, run.suite_id)
    spec = spec_of(run)
    prompts = plan_prompts(session, suite, spec)
    done = set(
        session.execute(
            select(Exchange.suite_prompt_id, Exchange.sample_index, Response.endpoint_id)
            .join(Conversation, Conversation.id == Exchange.conversation_id)
            .join(Response, Response.exchange_id == Exchange.id)
            .where(Conversation.suite_run_id == run.id, Response.status.in_(DONE_STATUSES))
        ).all()
    )
    items = [(p, s, e) for p in prompts for s in range(run.samples) for e in run.endpoints]
    return [item for item in items if (item[0].id, item[1], item[2]) not in done], len(items)


def _exchange_for(session: Session, run: SuiteRun, prompt: SuitePrompt, sample: int) -> int:
    found = session.scalar(
        select(Exchange.id)
        .join(Conversation, Conversation.id == Exchange.conversation_id)
        .where(
            Conversation.suite_run_id == run.id, Exchange.suite_prompt_id == prompt.id, Exchange.sample_index == sample
        )
    )
    if found is not None:
        return found
    conv = repo.create_conversation(
        session, mode="suite", title=prompt.text[:200], meta={"suite_prompt": prompt.key}, suite_run_id=run.id
    )
    return repo.add_exchange(session, conv.id, prompt.text, None, prompt.language, prompt.id, sample).id


def counts(session: Session, run: SuiteRun) -> dict:
    """Done and failed items per endpoint, from the database (for status pages)."""
    rows = session.execute(
        select(Response.endpoint_id, Response.status, func.count(func.distinct(Exchange.id)))
        .join(Exchange, Exchange.id == Response.exchange_id)
        .join(Conversation, Conversation.id == Exchange.conversation_id)
        .where(Conversation.suite_run_id == run.id)
        .group_by(Response.endpoint_id, Response.status)
    ).all()
    done, failed = {}, {}
    for endpoint_id, status, n in rows:
        if status in DONE_STATUSES:
            done[endpoint_id] = done.get(endpoint_id, 0) + n
        elif status == "error":
            failed[endpoint_id] = failed.get(endpoint_id, 0) + n
    _, total = pending_items(session, run)
    return {"total": total, "done": done, "failed": failed, "status": run.status}


def start_in_background(run_id: int, log_dir) -> int:
    """Run `cli.py suite resume RUN` in its own process session, so it outlives the browser tab."""
    import subprocess
    import sys

    cli = config.ROOT / "cli.py"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"suite_run_{run_id}.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(cli), "suite", "resume", str(run_id)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc.pid


def worker_alive(run: SuiteRun) -> bool:
    """Whether the process that last ran this run is still alive."""
    pid = (run.params or {}).get("worker_pid")
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def eta_seconds(run: SuiteRun, done: int, total: int) -> float | None:
    """Seconds left for a running run, from its pace since the worker started."""
    params = run.params or {}
    started, base = params.get("started_at"), params.get("done_at_start", 0)
    if run.status != "running" or not started or done <= base:
        return None
    return (total - done) * (time.time() - started) / (done - base)


def request_cancel(run_id: int) -> None:
    """Ask a running worker to stop; it notices within a second."""
    with session_scope() as session:
        run = session.get(SuiteRun, run_id)
        if run is not None and run.status in ("pending", "running"):
            run.status = "cancelling"


def _set_status(run_id: int, status: str, **params) -> None:
    with session_scope() as session:
        run = session.get(SuiteRun, run_id)
        run.status = status
        if params:
            run.params = {**run.params, **params}
        if status in ("completed", "cancelled", "incomplete"):
            run.finished_at = utcnow()


def _status(run_id: int) -> str:
    with session_scope() as session:
        return session.get(SuiteRun, run_id).status


def _store_batch(run_id: int, batch: list[tuple], label: bool) -> None:
    """Store finished items in one transaction and label them with one detector call.

    Runs in a worker thread, so the event loop keeps streaming while rows are written."""
    from lib.deflection import label_stored_responses

    with session_scope() as session:
        run = session.get(SuiteRun, run_id)
        rows = []
        for prompt_id, text, sample, endpoint, out in batch:
            exchange_id = _exchange_for(session, run, session.get(SuitePrompt, prompt_id), sample)
            rows.append((repo.add_response(session, exchange_id, endpoint.id, endpoint, out), text))
        if label:
            label_stored_responses(session, rows)


async def _execute(
    run_id: int, endpoints: dict[str, Endpoint], on_progress: Callable[[Progress], None] | None, label: bool
) -> Progress:
    with session_scope() as session:
        run = session.get(SuiteRun, run_id)
        items, total = pending_items(session, run)
        spec = spec_of(run)
        done_now = counts(session, run)["done"]
        item_keys = [(p.id, p.text, s, e) for p, s, e in items]
    progress = Progress(total=total, done=dict(done_now))
    overrides = {"temperature": spec.temperature, "max_tokens": spec.max_tokens}
    gates = {e: asyncio.Semaphore(1 if endpoints[e].is_embedded else spec.concurrency) for e in spec.endpoints}
    finished: asyncio.Queue = asyncio.Queue()

    async def one(prompt_id: int, text: str, sample: int, endpoint_id: str, http) -> None:
        endpoint = endpoints[endpoint_id]
        async with gates[endpoint_id]:
            out = Outcome()
            async for _ in stream_chat(endpoint, build_messages(endpoint, None, [], text), overrides, out, http):
                pass
        await finished.put((prompt_id, text, sample, endpoint, out))

    async def writer() -> None:
        while True:
            batch = [await finished.get()]
            while not finished.empty() and len(batch) < 64:
                batch.append(finished.get_nowait())
            try:
                await asyncio.to_thread(_store_batch, run_id, batch, label)
            finally:
                for *_, endpoint, out in batch:
                    bucket = progress.done if out.status in DONE_STATUSES else progress.failed
                    bucket[endpoint.id] = bucket.get(endpoint.id, 0) + 1
                    finished.task_done()
            if on_progress:
                on_progress(progress)

    async def watch(tasks: list[asyncio.Task]) -> None:
        while not all(t.done() for t in tasks):
            await asyncio.sleep(1.0)
            if await asyncio.to_thread(_status, run_id) == "cancelling":
                for task in tasks:
                    task.cancel()
                return

    async with openai.DefaultAsyncHttpxClient(limits=openai.DEFAULT_CONNECTION_LIMITS) as http:
        store = asyncio.ensure_future(writer())
        tasks = [asyncio.ensure_future(one(pid, text, s, e, http)) for pid, text, s, e in item_keys]
        watcher = asyncio.ensure_future(watch(tasks))
        await asyncio.gather(*tasks, return_exceptions=True)
        await finished.join()  # everything that finished is stored before we return
        watcher.cancel()
        store.cancel()
    if on_progress:
        on_progress(progress)
    return progress


def execute(
    run_id: int,
    endpoints: dict[str, Endpoint],
    on_progress: Callable[[Progress], None] | None = None,
    label: bool = True,
) -> str:
    """Run every pending item of a run in this process; returns the final status."""
    if _status(run_id) == "cancelling":
        _set_status(run_id, "cancelled")
        return "cancelled"
    with session_scope() as session:
        already = sum(counts(session, session.get(SuiteRun, run_id))["done"].values())
    _set_status(run_id, "running", worker_pid=os.getpid(), started_at=time.time(), done_at_start=already)
    try:
        progress = asyncio.run(_execute(run_id, endpoints, on_progress, label))
    except BaseException:
        _set_status(run_id, "incomplete")
        raise
    if _status(run_id) == "cancelling":
        status = "cancelled"
    else:
        status = "completed" if progress.completed >= progress.total else "incomplete"
    _set_status(run_id, status)
    return status
