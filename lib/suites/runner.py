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
from sqlalchemy.orm import Session

from db import config, conversations, suites
from db.engine import session_scope
from db.models import Suite, SuitePrompt, SuiteRun, utcnow
from db.vocab import RunStatus, Status
from lib.deflection.labelling import LabelJob, label_responses
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome, build_messages, stream_chat

DONE_STATUSES = Status.SETTLED


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
    """The run for this spec: the earlier one with the same signature, unless `new`. (run, resumed)."""
    from lib.suites.definitions import ensure_builtin

    validate(spec, endpoints)
    ensure_builtin(session)
    suite = suites.find_suite(session, spec.suite)
    if suite is None:
        raise RunError(f"unknown suite {spec.suite!r}. Known: {', '.join(suites.suite_names(session))}")
    if not plan_prompts(session, suite, spec):
        raise RunError(
            f"suite {suite.name!r} has no prompts for language={spec.language or 'any'}, topic={spec.topic or 'any'}"
        )
    signature = spec.signature(suite.id)
    if not new:
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
    live whose worker is gone reads `stopped`; `stored_status` is what the database says."""

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


def _state(run: SuiteRun, suite: Suite, rows: list[tuple[str, str, int]]) -> RunState:
    done, failed = _tally(rows)
    total = total_items(suite, run)
    stopped = run.status in (RunStatus.RUNNING, RunStatus.CANCELLING) and not worker_alive(run)
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
    )


def run_state(run_id: int) -> RunState:
    """The state of one run (effective status, progress per endpoint); RunError if there is none."""
    with session_scope() as s:
        run = suites.get_run(s, run_id)
        if run is None:
            raise RunError(f"there is no run {run_id}")
        return _state(run, suites.get_suite_by_id(s, run.suite_id), suites.status_counts(s, [run_id])[run_id])


def run_states(limit: int | None = None) -> list[RunState]:
    """The newest runs' states, newest first, in three queries whatever their number."""
    with session_scope() as s:
        runs = suites.list_runs(s, limit)
        rows = suites.status_counts(s, [run.id for run, _ in runs])
        return [_state(run, suite, rows[run.id]) for run, suite in runs]


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


def create_run(spec: RunSpec, endpoints: dict[str, Endpoint], new: bool = False) -> RunStart:
    """The start-a-run action (before any worker): the earlier run with the same suite, models
    and parameters unless `new`, else a new one. RunError for a spec a user can fix."""
    with session_scope() as s:
        run, resumed = create_or_resume(s, spec, endpoints, new=new)
        run_id = run.id
    return RunStart(run_id, resumed, run_state(run_id))


def check_resumable(run_id: int, endpoints: dict[str, Endpoint]) -> RunState:
    """The run's state if it can be resumed with these endpoints; RunError naming what is missing."""
    state = run_state(run_id)
    missing = [e for e in state.endpoints if e not in endpoints]
    if missing:
        raise RunError(f"run {run_id} uses model(s) no longer configured: {', '.join(missing)}")
    return state


def start_in_background(run_id: int, log_dir=None) -> int:
    """Run `cli.py suite resume RUN` in its own process session, so it outlives the browser tab.

    The log goes to suite_run_RUN.log in `log_dir` (default: the data folder); returns the pid."""
    import subprocess
    import sys

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


def _set_status(run_id: int, status: str, **params) -> None:
    with session_scope() as session:
        run = suites.get_run(session, run_id)
        run.status = status
        if params:
            run.params = {**run.params, **params}
        if status in RunStatus.FINISHED:
            run.finished_at = utcnow()


def _status(run_id: int) -> str:
    with session_scope() as session:
        return suites.get_run(session, run_id).status


def _store_batch(run_id: int, batch: list[tuple], label: bool) -> None:
    """Store finished items in one short transaction, then label them outside it with one
    detector call. Runs in a worker thread, so the event loop keeps streaming meanwhile."""
    jobs = []
    with session_scope() as session:
        run = suites.get_run(session, run_id)
        for prompt_id, text, sample, endpoint, out in batch:
            exchange_id = suites.exchange_for(session, run, suites.get_prompt(session, prompt_id), sample)
            row = conversations.add_response(session, exchange_id, endpoint.id, endpoint, out)
            jobs.append(LabelJob(row.id, text, out.text, out.status))
    if label:
        label_responses(jobs)


async def _execute(
    run_id: int, endpoints: dict[str, Endpoint], on_progress: Callable[[Progress], None] | None, label: bool
) -> Progress:
    with session_scope() as session:
        run = suites.get_run(session, run_id)
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
            if await asyncio.to_thread(_status, run_id) == RunStatus.CANCELLING:
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
    if _status(run_id) == RunStatus.CANCELLING:
        _set_status(run_id, RunStatus.CANCELLED)
        return RunStatus.CANCELLED
    with session_scope() as session:
        already = sum(counts(session, suites.get_run(session, run_id))["done"].values())
    _set_status(run_id, RunStatus.RUNNING, worker_pid=os.getpid(), started_at=time.time(), done_at_start=already)
    try:
        progress = asyncio.run(_execute(run_id, endpoints, on_progress, label))
    except BaseException:
        _set_status(run_id, RunStatus.INCOMPLETE)
        raise
    if _status(run_id) == RunStatus.CANCELLING:
        status = RunStatus.CANCELLED
    else:
        status = RunStatus.COMPLETED if progress.completed >= progress.total else RunStatus.INCOMPLETE
    _set_status(run_id, status)
    return status
