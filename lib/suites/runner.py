"""Suite runs: every (prompt, sample, endpoint) of a suite, stored as ordinary responses.

A run is identified by a signature of its suite, endpoints and parameters, so asking for the
same run again resumes it instead of paying twice (creation is serialised per suite, so two
starts at once find the same run). This module holds the run's spec, its plan and the actions
the page and the CLI share (create, state, resume check, background start, follow, cancel);
lib/suites/worker.py works on a run, one worker at a time (lib/suites/lease.py). A run whose
worker stopped renewing its lease reads `stopped` and can be resumed; resuming redoes exactly the
items that have no `ok` or `blocked` answer yet (failed ones are retried)."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from db import config, suites
from db.engine import session_scope
from db.models import Suite, SuitePrompt, SuiteRun
from db.vocab import RunStatus, Status
from lib.providers.endpoints import Endpoint
from lib.safety import one_line_name
from lib.suites import lease as leases

DONE_STATUSES = Status.SETTLED


class RunError(ValueError):
    """A run that cannot start (unknown suite, no prompts for the language, zero samples...)."""


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

    def __post_init__(self) -> None:
        if self.topic is not None:  # as topics are stored: "ｔａｉｗａｎ" or "台湾\u00a0历史" typed finds them
            self.topic = one_line_name(self.topic) or None

    def signature(self, suite_id: int) -> str:
        """Same suite, endpoints and parameters → same signature (concurrency does not count)."""
        body = {k: v for k, v in asdict(self).items() if k not in ("concurrency", "suite")}
        body["endpoints"] = sorted(self.endpoints)
        return hashlib.sha256(json.dumps({"suite_id": suite_id, **body}, sort_keys=True).encode()).hexdigest()[:32]


def plan_prompts(session: Session | None, suite: Suite, spec: RunSpec) -> list[SuitePrompt]:
    """The suite's prompts after the language/topic filters and the --limit."""
    prompts = [
        p
        for p in suite.prompts
        if (spec.language is None or p.language == spec.language) and (spec.topic is None or p.topic == spec.topic)
    ]
    return prompts[: spec.limit] if spec.limit else prompts


MAX_SAMPLES = 1000  # answers per prompt and model in one run


def validate(spec: RunSpec, endpoints: dict[str, Endpoint]) -> None:
    """Reject specs a user can fix before anything is written."""
    if not 1 <= spec.samples <= MAX_SAMPLES:
        raise RunError(f"samples must be from 1 to {MAX_SAMPLES:,}")
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
    from lib.suites.definitions import ensure_builtin, unknown_suite

    validate(spec, endpoints)
    ensure_builtin(session)
    suite = suites.find_suite(session, spec.suite)
    if suite is None:
        raise RunError(unknown_suite(session, spec.suite))
    if not plan_prompts(session, suite, spec):
        topics = sorted({p.topic for p in suite.prompts if p.topic and spec.language in (None, p.language)})
        listed = f"; its topics: {', '.join(topics[:30])}{', …' if len(topics) > 30 else ''}" if spec.topic else ""
        raise RunError(
            f"suite {suite.name!r} has no prompts for language={spec.language or 'any'}, topic={spec.topic or 'any'}"
            + listed
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
    settings: str = ""  # what was asked, in words (`describe`): two runs of one suite differ here
    suite_version: str = ""  # the version of the suite it runs (two versions of one suite read alike without it)

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


def describe(spec: RunSpec) -> str:
    """A run's prompts and parameters in words: "first 2 prompts, en, topic 'x', 3 samples,
    temperature 0.2, each model's own max tokens"."""
    parts = [f"first {spec.limit} prompt{'s' if spec.limit != 1 else ''}" if spec.limit else "all prompts"]
    if spec.language:
        parts.append(spec.language)
    if spec.topic:
        parts.append(f"topic {spec.topic!r}")
    parts.append(f"{spec.samples} sample{'s' if spec.samples != 1 else ''}")
    for name, value in (("temperature", spec.temperature), ("max tokens", spec.max_tokens)):
        parts.append(f"{name} {value:g}" if value is not None else f"each model's own {name}")
    return ", ".join(parts)


def _state(run: SuiteRun, suite: Suite, rows: list[tuple[str, str, int]], now: datetime) -> RunState:
    done, failed = _tally(rows)
    total = total_items(suite, run)
    alive = leases.holder_alive(run, now)
    # a pending run nobody has taken up within a lease's time (its background start failed) is stopped too
    never_started = run.status == RunStatus.PENDING and (now - run.created_at).total_seconds() > leases.LEASE_S
    stopped = not alive and (run.status in (RunStatus.RUNNING, RunStatus.CANCELLING) or never_started)
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
        settings=describe(spec_of(run)),
        suite_version=suite.version,
    )


def run_state(run_id: int) -> RunState:
    """The state of one run (effective status, progress per endpoint); RunError if there is none."""
    with session_scope() as s:
        run = suites.get_run(s, run_id)
        if run is None:
            raise RunError(f"there is no run {run_id}")
        rows = suites.status_counts(s, [run_id])[run_id]
        return _state(run, suites.get_suite_by_id(s, run.suite_id), rows, suites.db_now(s))


def failure_reasons(run_id: int) -> dict[str, str]:
    """Per endpoint with failed items in a run: why its newest failure failed (the provider's
    message as stored: keys already redacted)."""
    with session_scope() as s:
        return suites.last_errors(s, run_id)


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
    from lib.suites.definitions import ensure_builtin_suites

    ensure_builtin_suites()  # in a transaction of its own: another process may be doing it too
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
    log goes to suite_run_RUN.log in `log_dir` (default: the data folder); RunError naming it
    when it cannot be written (a folder there); returns the pid."""
    import subprocess

    state = run_state(run_id)
    if state.worker is not None:
        raise RunBusy(run_id, state.worker)
    cli = config.ROOT / "cli.py"
    log_dir = log_dir or config.data_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"suite_run_{run_id}.log"
    try:
        log = open(log_path, "ab")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise RunError(f"run {run_id} cannot start: its log {log_path} cannot be written ({why})") from None
    with log:
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


def request_cancel(run_id: int) -> str:
    """Ask a running worker to stop; it notices within a second. Returns the run's stored status
    afterwards: `cancelling`, or how it already ended (nothing to stop then). RunError when there
    is no such run."""
    with session_scope() as session:
        run = suites.get_run(session, run_id)
        if run is None:
            raise RunError(f"there is no run {run_id}")
        if run.status in (RunStatus.PENDING, RunStatus.RUNNING):
            run.status = RunStatus.CANCELLING
        return run.status
