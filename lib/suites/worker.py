"""Working on a suite run: the one worker that holds the run's lease asks every pending item,
stores each finished answer, labels it, renews the lease and watches for a cancel request.

Finished answers are stored first, in short transactions of up to BATCH, and labelled after, in
their own task outside any write transaction, so the write lock is held for milliseconds and no
finished answer waits for the detector (answers stored but never labelled, as when a worker dies
in between, are labelled when the run resumes). A write that fails (disk full, a database error)
ends the run at once with status `failed` and the reason; progress counts stored answers only;
an error in any task ends the run, none is swallowed. Concurrency is limited per endpoint; the
embedded endpoints share one limit that leaves the Compare page two of the server's slots (see
`embedded_concurrency`). A run is cancelled by
setting its status to `cancelling`; the worker notices within a second."""

from __future__ import annotations

import asyncio
import errno
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import openai

from db import conversations, suites
from db.engine import release_reserve, session_scope
from db.models import utcnow
from db.vocab import RunStatus
from lib.deflection.labelling import LabelJob, label_responses
from lib.present import plural
from lib.providers import local_server
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome, build_messages, stream_chat
from lib.suites import lease as leases
from lib.suites.lease import HEARTBEAT_S, LEASE_S, Lease, LeaseLost
from lib.suites.runner import DONE_STATUSES, RunBusy, RunError, counts, pending_items, spec_of

BATCH = 64  # most answers stored in one transaction


class RunFailed(RuntimeError):
    """A step of a run failed (storing, labelling, renewing the lease); the message says which."""


@dataclass
class Progress:
    """Live counts of one run, from stored answers only; `commit_wait_max_ms` is the longest any
    finished answer waited before its transaction committed."""

    total: int
    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    commit_wait_max_ms: float = 0.0

    @property
    def completed(self) -> int:
        """Items with an answer (ok or blocked)."""
        return sum(self.done.values())


def embedded_concurrency(requested: int) -> int:
    """How many requests a run sends the embedded model at once, all its embedded endpoints
    together: up to SLOTS - 2 with llama-server (two slots stay free for the Compare page's two
    columns), one with llama-cpp-python's server, which answers one request at a time."""
    if local_server.backend() != local_server.LLAMA_SERVER:
        return 1
    return max(1, min(requested, local_server.SLOTS - 2))


def _set_status(run_id: int, status: str, error: str | None = None, **params) -> None:
    with session_scope() as session:
        run = suites.get_run(session, run_id)
        run.status = status
        run.error = error
        if params:
            run.params = {**run.params, **params}
        if status in RunStatus.FINISHED:
            run.finished_at = utcnow()


def _status(run_id: int) -> str:
    with session_scope() as session:
        return suites.get_run(session, run_id).status


@dataclass
class _Finished:
    prompt_id: int
    prompt: str
    sample: int
    endpoint: Endpoint
    out: Outcome
    at: float  # time.monotonic() when the answer finished


def _store_batch(run_id: int, batch: list[_Finished]) -> list[LabelJob]:
    """Store finished items in one short transaction (no CPU work inside it); the label jobs."""
    jobs = []
    with session_scope() as session:
        run = suites.get_run(session, run_id)
        for item in batch:
            prompt = suites.get_prompt(session, item.prompt_id)
            exchange_id = suites.exchange_for(session, run, prompt, item.sample)
            row = conversations.add_response(session, exchange_id, item.endpoint.id, item.endpoint, item.out)
            jobs.append(LabelJob(row.id, item.prompt, item.out.text, item.out.status))
    return jobs


def _label_backlog(run_id: int) -> None:
    """Label the run's stored answers that missed their label (a worker died in between)."""
    from lib.deflection import source_name

    with session_scope() as session:
        rows = suites.unlabelled_run_answers(session, run_id, source_name())
    for start in range(0, len(rows), 512):
        label_responses([LabelJob(*row) for row in rows[start : start + 512]])


async def _execute(
    lease: Lease, endpoints: dict[str, Endpoint], on_progress: Callable[[Progress], None] | None, label: bool
) -> Progress:
    run_id = lease.run_id
    with session_scope() as session:
        run = suites.get_run(session, run_id)
        items, total = pending_items(session, run)
        spec = spec_of(run)
        done_now = counts(session, run)["done"]
        item_keys = [(p.id, p.text, s, e) for p, s, e in items]
    progress = Progress(total=total, done=dict(done_now))
    overrides = {"temperature": spec.temperature, "max_tokens": spec.max_tokens}
    embedded = asyncio.Semaphore(embedded_concurrency(spec.concurrency))  # shared by the embedded endpoints
    gates = {e: embedded if endpoints[e].is_embedded else asyncio.Semaphore(spec.concurrency) for e in spec.endpoints}
    finished: asyncio.Queue[_Finished | None] = asyncio.Queue()  # None: no more answers
    to_label: asyncio.Queue[list[LabelJob] | None] = asyncio.Queue()
    stored = asyncio.Event()

    async def one(prompt_id: int, text: str, sample: int, endpoint_id: str, http) -> None:
        endpoint = endpoints[endpoint_id]
        async with gates[endpoint_id]:
            out = Outcome()
            async for _ in stream_chat(endpoint, build_messages(endpoint, None, [], text), overrides, out, http):
                pass
        finished.put_nowait(_Finished(prompt_id, text, sample, endpoint, out, time.monotonic()))

    async def ask_all(http) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                for key in item_keys:
                    group.create_task(one(*key, http))
        finally:
            finished.put_nowait(None)  # also when cancelled: the writer stores what finished

    async def write() -> None:
        while True:
            batch = [await finished.get()]
            while batch[-1] is not None and len(batch) < BATCH and not finished.empty():
                batch.append(finished.get_nowait())
            answers = [item for item in batch if item is not None]
            if answers:
                try:
                    jobs = await asyncio.to_thread(_store_batch, run_id, answers)
                except Exception as exc:
                    raise RunFailed(f"storing {plural(len(answers), 'answer')} failed: {_cause(exc)}") from exc
                committed = time.monotonic()
                progress.commit_wait_max_ms = max(
                    progress.commit_wait_max_ms, *((committed - item.at) * 1000 for item in answers)
                )
                for item in answers:  # counted once stored, never before
                    bucket = progress.done if item.out.status in DONE_STATUSES else progress.failed
                    bucket[item.endpoint.id] = bucket.get(item.endpoint.id, 0) + 1
                if label:
                    to_label.put_nowait(jobs)
                if on_progress:
                    on_progress(progress)
            if batch[-1] is None:
                to_label.put_nowait(None)
                stored.set()
                return

    async def labeller() -> None:
        try:
            await asyncio.to_thread(_label_backlog, run_id)
        except Exception as exc:
            raise RunFailed(f"labelling earlier answers failed: {_cause(exc)}") from exc
        ended = False
        while not ended:
            jobs = [await to_label.get()]
            while jobs[-1] is not None and not to_label.empty():
                jobs.append(to_label.get_nowait())
            ended = jobs[-1] is None
            batch = [job for chunk in jobs if chunk for job in chunk]
            if batch:
                try:
                    await asyncio.to_thread(label_responses, batch)
                except Exception as exc:
                    raise RunFailed(f"labelling {len(batch)} stored answers failed: {_cause(exc)}") from exc

    async def watch(work: asyncio.Task) -> None:
        failing_since = None
        while not stored.is_set():
            try:
                await asyncio.wait_for(stored.wait(), HEARTBEAT_S)
                return
            except TimeoutError:
                pass
            try:
                status = await asyncio.to_thread(leases.renew, lease)
                failing_since = None
            except LeaseLost:
                raise
            except Exception as exc:  # a busy database: keep trying while the lease is still ours
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > LEASE_S / 2:
                    raise RunFailed(f"renewing the worker's lease failed: {_cause(exc)}") from exc
                continue
            if status == RunStatus.CANCELLING:
                work.cancel()

    http_client = openai.DefaultAsyncHttpxClient(limits=openai.DEFAULT_CONNECTION_LIMITS)
    async with http_client as http, asyncio.TaskGroup() as group:
        work = group.create_task(ask_all(http))
        group.create_task(write())
        if label:
            group.create_task(labeller())
        group.create_task(watch(work))
    if on_progress:
        on_progress(progress)
    return progress


def _cause(exc: BaseException) -> str:
    """The driver's words for a database error (SQLAlchemy's message adds the SQL), on one line."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


def _reason(exc: BaseException) -> str:
    """One line saying why a run failed, from the errors of its task group."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(dict.fromkeys(_reason(e) for e in exc.exceptions))
    if isinstance(exc, RunFailed):
        return str(exc)
    return f"the run failed: {_cause(exc)}"


def _record_end(run_id: int, status: str, error: str | None = None) -> None:
    """Store how the run ended. On a full disk the database's reserve is released to make room
    (see `db.engine.release_reserve`); a database that refuses even then is reported, not hidden,
    and the reason is printed since it could not be stored."""
    try:
        _set_status(run_id, status, error)
        return
    except Exception as exc:  # noqa: BLE001 - the run's own failure is the news; say both
        first = exc
    if _disk_full(first) and release_reserve():
        try:
            _set_status(run_id, status, error)
            return
        except Exception as exc:  # noqa: BLE001
            first = exc
    print(f"run {run_id}: could not record status {status} ({_cause(first)})", file=sys.stderr)
    if error:
        print(f"run {run_id}: {status}: {error}", file=sys.stderr)


def _disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL ("database or disk is full") or an OSError ENOSPC, however wrapped."""
    cause = getattr(exc, "orig", None) or exc
    return getattr(cause, "errno", None) == errno.ENOSPC or "full" in str(cause).lower()


def execute(
    run_id: int,
    endpoints: dict[str, Endpoint],
    on_progress: Callable[[Progress], None] | None = None,
    label: bool = True,
) -> str:
    """Run every pending item of a run in this process; returns the final status.

    RunBusy (nothing done) when a live worker already holds the run. A failed write ends the run
    at once with status `failed` and the reason in its `error` (see `run_state`)."""
    try:
        lease = leases.acquire(run_id)
    except leases.LeaseHeld as exc:
        raise RunBusy(run_id, exc.worker) from None
    except LookupError as exc:
        raise RunError(str(exc)) from None
    try:
        if _status(run_id) == RunStatus.CANCELLING:
            _set_status(run_id, RunStatus.CANCELLED)
            return RunStatus.CANCELLED
        with session_scope() as session:
            already = sum(counts(session, suites.get_run(session, run_id))["done"].values())
        _set_status(run_id, RunStatus.RUNNING, started_at=time.time(), done_at_start=already)
        try:
            asyncio.run(_execute(lease, endpoints, on_progress, label))
        except Exception as exc:
            if any(isinstance(e, LeaseLost) for e in _leaves(exc)):
                raise RunError(str(next(e for e in _leaves(exc) if isinstance(e, LeaseLost)))) from None
            _record_end(run_id, RunStatus.FAILED, _reason(exc))
            return RunStatus.FAILED
        except BaseException:
            _record_end(run_id, RunStatus.INCOMPLETE)
            raise
        with session_scope() as session:
            run = suites.get_run(session, run_id)
            state = counts(session, run)
            cancelling = run.status == RunStatus.CANCELLING
        if cancelling:
            status = RunStatus.CANCELLED
        else:  # from what is stored, not from what was attempted
            status = RunStatus.COMPLETED if sum(state["done"].values()) >= state["total"] else RunStatus.INCOMPLETE
        _record_end(run_id, status)
        return status
    finally:
        try:
            leases.release(lease)
        except Exception:  # noqa: BLE001, S110 - an unreleased lease lapses by itself after LEASE_S
            pass


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]
