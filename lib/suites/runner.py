"""Suite runs: every (prompt, sample, endpoint) of a suite, stored as ordinary responses.

A run is identified by a signature of its suite, endpoints and parameters, so asking for the
same run again resumes it instead of paying twice (creation is serialised per suite, so two
starts at once find the same run). One worker works on a run at a time: it holds the run's
lease in the database (db/suites.py) and renews it every second; a second start is refused
with the worker's host and pid (the CLI then follows its progress), and a run whose worker
stopped renewing reads `stopped` and can be resumed.

Finished answers are stored first, in short transactions of up to 64, and labelled after, in
their own task outside any write transaction, so the write lock is held for milliseconds and
no finished answer waits for the detector. Resuming redoes exactly the items that have no `ok`
or `blocked` answer yet (failed ones are retried) and labels stored answers that missed their
label. A write that fails (disk full, a database error) ends the run at once with status
`failed` and the reason; progress counts stored answers only. Concurrency is limited per
endpoint (the embedded server gains nothing from parallel requests, so it gets one). A run is
cancelled by setting its status to `cancelling`; the worker notices within a second."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime

import openai
from sqlalchemy.orm import Session

from db import config, conversations, suites
from db.engine import session_scope
from db.models import Suite, SuitePrompt, SuiteRun, utcnow
from db.vocab import RunStatus, Status
from lib.deflection.labelling import LabelJob, label_responses
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome, build_messages, stream_chat
from lib.suites import lease as leases
from lib.suites.lease import HEARTBEAT_S, LEASE_S, Lease, LeaseLost

DONE_STATUSES = Status.SETTLED
BATCH = 64  # most answers stored in one transaction


class RunError(ValueError):
    """A run that cannot start (unknown suite, no prompts for the language, zero samples...)."""


class RunFailed(RuntimeError):
    """A step of a run failed (storing, labelling, renewing the lease); the message says which."""


class RunBusy(RunError):
    """Another live worker holds the run's lease; `worker` names its host and pid."""

    def __init__(self, run_id: int, worker: str | None):
        super().__init__(f"run {run_id} is already running in another worker ({worker or 'unknown'})")
        self.run_id, self.worker = run_id, worker


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


def plan_prompts(session: Session | None, suite: Suite, spec: RunSpec) -> list[SuitePrompt]:
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
    """The run for this spec: the earlier one with the same signature, unless `new`. (run, resumed).

    Two starts at the same moment find the same run: creation takes the suite's lock first."""
    from lib.suites.definitions import ensure_builtin_suites

    validate(spec, endpoints)
    ensure_builtin_suites()
    suite = suites.find_suite(session, spec.suite)
    if suite is None:
        raise RunError(f"unknown suite {spec.suite!r}. Known: {', '.join(suites.suite_names(session))}")
    if not plan_prompts(session, suite, spec):
        raise RunError(
            f"suite {suite.name!r} has no prompts for language={spec.language or 'any'}, topic={spec.topic or 'any'}"
        )
    signature = spec.signature(suite.id)
    if not new:
        suites.lock_suite_runs(session, suite.id)
        earlier = suites.latest_run_with_signature(session, signature)
        if earlier is not None:
            return earlier, True
    return suites.add_run(session, suite.id, signature, list(spec.endpoints), asdict(spec), spec.samples), False


def spec_of(run: SuiteRun) -> RunSpec:
    """The spec a run was created with."""
    known = {f for f in RunSpec.__dataclass_fields__}
    return RunSpec(**{k: v for k, v in run.params.items() if k in known})


def total_items(suite: Suite, run: SuiteRun) -> int:
    """How many (prompt, sample, endpoint) items the run has in all."""
    return len(plan_prompts(None, suite, spec_of(run))) * run.samples * len(run.endpoints)


def pending_items(session: Session, run: SuiteRun) -> tuple[list[tuple[SuitePrompt, int, str]], int]:
    """(items still to do, total items) for a run; an item is (prompt, sample, endpoint id)."""
    suite = suites.get_suite_by_id(session, run.suite_id)
    prompts = plan_prompts(session, suite, spec_of(run))
    done = suites.settled_items(session, run.id)
    items = [(p, s, e) for p in prompts for s in range(run.samples) for e in run.endpoints]
    return [item for item in items if (item[0].id, item[1], item[2]) not in done], len(items)


def _tally(rows: list[tuple[str, str, int]]) -> tuple[dict[str, int], dict[str, int]]:
    done, failed = {}, {}
    for endpoint_id, status, n in rows:
        if status in DONE_STATUSES:
            done[endpoint_id] = done.get(endpoint_id, 0) + n
        elif status == Status.ERROR:
            failed[endpoint_id] = failed.get(endpoint_id, 0) + n
    return done, failed


def counts(session: Session, run: SuiteRun) -> dict:
    """Done and failed items per endpoint, from the database: {total, done, failed, status}."""
    done, failed = _tally(suites.status_counts(session, [run.id])[run.id])
    suite = suites.get_suite_by_id(session, run.suite_id)
    return {"total": total_items(suite, run), "done": done, "failed": failed, "status": run.status}


@dataclass(frozen=True)
class RunState:
    """A run as pages and `suite status` show it. `status` is the effective state: a run marked
    live whose worker's lease has lapsed reads `stopped`; `stored_status` is what the database
    says. `worker` is the lease holder ('HOST pid N', while live); `error` why a run failed."""

    id: int
    suite: str
    status: str
    stored_status: str
    endpoints: list[str]
    samples: int
    total: int
    done: dict[str, int]
    failed: dict[str, int]
    eta_s: float | None
    created_at: object
    worker: str | None = None
    error: str | None = None

    @property
    def completed(self) -> int:
        """Items with an answer (ok or blocked)."""
        return sum(self.done.values())

    @property
    def resumable(self) -> bool:
        """True when the run has items left and no worker on it."""
        return self.status in (RunStatus.INCOMPLETE, RunStatus.CANCELLED, RunStatus.STOPPED, RunStatus.FAILED) and (
            self.completed < self.total
        )

    @property
    def live(self) -> bool:
        """True while a worker is on the run (or about to start)."""
        return self.status in RunStatus.LIVE


def _state(run: SuiteRun, suite: Suite, rows: list[tuple[str, str, int]], now: datetime) -> RunState:
    done, failed = _tally(rows)
    total = total_items(suite, run)
    alive = leases.holder_alive(run, now)
    stopped = run.status in (RunStatus.RUNNING, RunStatus.CANCELLING) and not alive
    return RunState(
        id=run.id,
        suite=suite.name,
        status=RunStatus.STOPPED if stopped else run.status,
        stored_status=run.status,
        endpoints=list(run.endpoints),
        samples=run.samples,
        total=total,
        done=done,
        failed=failed,
        eta_s=None if stopped else eta_seconds(run, sum(done.values()), total),
        created_at=run.created_at,
        worker=run.worker if alive else None,
        error=run.error,
    )


def run_state(run_id: int) -> RunState:
    """The state of one run (effective status, progress per endpoint); RunError if there is none."""
    with session_scope() as s:
        run = suites.get_run(s, run_id)
        if run is None:
            raise RunError(f"there is no run {run_id}")
        rows = suites.status_counts(s, [run_id])[run_id]
        return _state(run, suites.get_suite_by_id(s, run.suite_id), rows, suites.db_now(s))


def run_states(limit: int | None = None) -> list[RunState]:
    """The newest runs' states, newest first, in four queries whatever their number."""
    with session_scope() as s:
        runs = suites.list_runs(s, limit)
        rows = suites.status_counts(s, [run.id for run, _ in runs])
        now = suites.db_now(s)
        return [_state(run, suite, rows[run.id], now) for run, suite in runs]


@dataclass(frozen=True)
class RunStart:
    """What asking for a run gave: its id, whether it existed, and its state."""

    run_id: int
    resumed: bool
    state: RunState

    @property
    def already_complete(self) -> bool:
        """True when the same run exists and has nothing left to do."""
        return self.resumed and self.state.completed >= self.state.total

    @property
    def running_elsewhere(self) -> bool:
        """True when the same run exists and a live worker is on it."""
        return self.resumed and self.state.worker is not None


def create_run(spec: RunSpec, endpoints: dict[str, Endpoint], new: bool = False) -> RunStart:
    """The start-a-run action (before any worker): the earlier run with the same suite, models
    and parameters unless `new`, else a new one. RunError for a spec a user can fix."""
    with session_scope() as s:
        run, resumed = create_or_resume(s, spec, endpoints, new=new)
        run_id = run.id
    return RunStart(run_id, resumed, run_state(run_id))


def check_resumable(run_id: int, endpoints: dict[str, Endpoint]) -> RunState:
    """The run's state if it can be resumed with these endpoints; RunError naming what is missing,
    RunBusy when a live worker is on it."""
    state = run_state(run_id)
    missing = [e for e in state.endpoints if e not in endpoints]
    if missing:
        raise RunError(f"run {run_id} uses model(s) no longer configured: {', '.join(missing)}")
    if state.worker is not None:
        raise RunBusy(run_id, state.worker)
    return state


def start_in_background(run_id: int, log_dir=None) -> int:
    """Run `cli.py suite resume RUN` in its own process session, so it outlives the browser tab.

    RunBusy when a live worker is already on the run (the new process would refuse anyway). The
    log goes to suite_run_RUN.log in `log_dir` (default: the data folder); returns the pid."""
    import subprocess

    state = run_state(run_id)
    if state.worker is not None:
        raise RunBusy(run_id, state.worker)
    cli = config.ROOT / "cli.py"
    log_dir = log_dir or config.data_dir()
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


def follow(run_id: int, on_state: Callable[[RunState], None], every_s: float = 1.0) -> RunState:
    """Watch a run another worker is on until it is no longer live; returns its last state."""
    while True:
        state = run_state(run_id)
        on_state(state)
        if not state.live:
            return state
        time.sleep(every_s)


def eta_seconds(run: SuiteRun, done: int, total: int) -> float | None:
    """Seconds left for a running run, from its pace since the worker started."""
    params = run.params or {}
    started, base = params.get("started_at"), params.get("done_at_start", 0)
    if run.status != RunStatus.RUNNING or not started or done <= base:
        return None
    return (total - done) * (time.time() - started) / (done - base)


def request_cancel(run_id: int) -> None:
    """Ask a running worker to stop; it notices within a second."""
    with session_scope() as session:
        run = suites.get_run(session, run_id)
        if run is None:
            raise RunError(f"there is no run {run_id}")
        if run.status in (RunStatus.PENDING, RunStatus.RUNNING):
            run.status = RunStatus.CANCELLING


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
    gates = {e: asyncio.Semaphore(1 if endpoints[e].is_embedded else spec.concurrency) for e in spec.endpoints}
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
                    raise RunFailed(f"storing {len(answers)} answers failed: {_cause(exc)}") from exc
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
    """Store how the run ended; a database that refuses even this is reported, not hidden."""
    try:
        _set_status(run_id, status, error)
    except Exception as exc:  # noqa: BLE001 - the run's own failure is the news; say both
        print(f"run {run_id}: could not record status {status} ({_cause(exc)})", file=sys.stderr)


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
