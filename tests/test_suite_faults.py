"""Suite runs under faults: a write that fails (forced, and a real full filesystem), answers that
must not wait for the detector, parallel `ask` processes beside a running suite, and one worker
per run (a lease with a heartbeat; a dead worker reads `stopped` and resumes cleanly)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from db import suites as suite_queries
from db.engine import dispose_all, session_scope
from db.models import Conversation, Exchange, Label, Response, Suite, SuiteRun, utcnow
from lib.providers.endpoints import load_endpoints
from lib.suites import runner, worker
from lib.suites.lease import LEASE_S
from lib.suites.runner import RunBusy, RunSpec, create_or_resume, run_state
from lib.suites.worker import execute
from tests.conftest import ROOT
from tests.test_cli import cli


def _endpoints_file(tmp_path, url: str, **models: str) -> None:
    """A user endpoints file with one local endpoint per (id, model) on the protocol server."""
    (tmp_path / "endpoints.user.toml").write_text(
        "".join(
            f'[endpoints.{eid}]\nbase_url = "{url}"\nmodel = "{model}"\nkind = "local"\nmax_retries = 0\n\n'
            for eid, model in models.items()
        )
    )


def _new_run(spec: RunSpec) -> int:
    with session_scope() as s:
        run, _ = create_or_resume(s, spec, load_endpoints())
        return run.id


def _stored(run_id: int) -> int:
    with session_scope() as s:
        return s.scalar(
            select(func.count(Response.id))
            .join(Exchange, Exchange.id == Response.exchange_id)
            .join(Conversation, Conversation.id == Exchange.conversation_id)
            .where(Conversation.suite_run_id == run_id)
        )


def _answers_per_item(run_id: int) -> list[int]:
    with session_scope() as s:
        rows = s.execute(
            select(func.count())
            .select_from(Response)
            .join(Exchange, Exchange.id == Response.exchange_id)
            .join(Conversation, Conversation.id == Exchange.conversation_id)
            .where(Conversation.suite_run_id == run_id, Response.status == "ok")
            .group_by(Exchange.suite_prompt_id, Exchange.sample_index, Response.endpoint_id)
        ).all()
    return [n for (n,) in rows]


def _in_thread(fn, *args, **kwargs):
    """Run fn in a thread; (thread, box) where box gets 'result' or 'error'."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _failing_store(fail_when):
    """A _store_batch that raises a database error when fail_when(stored so far, batch) is true."""
    real, stored = worker._store_batch, {"n": 0}

    def store(run_id, batch):
        if fail_when(stored["n"], batch):
            raise OperationalError("INSERT INTO response ...", {}, Exception("database or disk is full"))
        jobs = real(run_id, batch)
        stored["n"] += len(batch)
        return jobs

    return store


def test_a_failed_write_ends_the_run_failed_with_the_reason(protocol_server, tmp_path, monkeypatch):
    _endpoints_file(tmp_path, protocol_server.url, slow="echo-0.02")
    run_id = _new_run(RunSpec("general", ["slow"], limit=30, concurrency=2))
    monkeypatch.setattr(worker, "_store_batch", _failing_store(lambda n, batch: n >= 4))
    thread, box = _in_thread(execute, run_id, load_endpoints(), label=False)
    thread.join(timeout=60)
    assert not thread.is_alive(), "the run hung after a failed write"
    assert box.get("result") == "failed", box
    state = run_state(run_id)
    assert state.status == "failed" and "database or disk is full" in state.error
    assert re.match(r"storing \d+ answers? failed: ", state.error), state.error
    assert state.completed == _stored(run_id) >= 4  # progress counts stored answers only
    status = json.loads(cli("suite", "status", str(run_id), "--json").stdout)
    assert status["status"] == "failed" and "disk is full" in status["error"]


def test_a_failed_last_batch_is_not_reported_complete(protocol_server, tmp_path, monkeypatch):
    _endpoints_file(tmp_path, protocol_server.url, fast="echo")
    run_id = _new_run(RunSpec("general", ["fast"], limit=10, concurrency=1))
    monkeypatch.setattr(worker, "_store_batch", _failing_store(lambda n, batch: n + len(batch) >= 10))
    seen = []
    thread, box = _in_thread(execute, run_id, load_endpoints(), on_progress=lambda p: seen.append(p.completed))
    thread.join(timeout=60)
    assert box.get("result") == "failed", box
    stored = _stored(run_id)
    assert stored < 10 and max(seen) == stored == run_state(run_id).completed


def test_finished_answers_are_stored_while_the_detector_is_still_busy(protocol_server, tmp_path, monkeypatch):
    """Labelling runs after storing, in its own task: while the first labelling call is held up
    (as by the detector's import), every other finished answer is still committed."""
    _endpoints_file(tmp_path, protocol_server.url, fast="echo")
    run_id = _new_run(RunSpec("general", ["fast"], limit=12, concurrency=4))
    all_stored, labelled = threading.Event(), []

    def slow_labeller(jobs):
        if not labelled:  # the first call waits until every answer is in the database
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and _stored(run_id) < 12:
                time.sleep(0.05)
            if _stored(run_id) == 12:
                all_stored.set()
        labelled.extend(jobs)
        return {}

    monkeypatch.setattr(worker, "label_responses", slow_labeller)
    assert execute(run_id, load_endpoints()) == "completed"
    assert all_stored.is_set(), "answers waited uncommitted for the labeller"
    assert len({job.response_id for job in labelled}) == 12


def test_answers_stored_but_never_labelled_are_labelled_on_resume(protocol_server, tmp_path):
    _endpoints_file(tmp_path, protocol_server.url, fast="echo")
    run_id = _new_run(RunSpec("general", ["fast"], limit=5))
    assert execute(run_id, load_endpoints(), label=False) == "completed"  # as if killed before labelling
    with session_scope() as s:
        assert s.scalar(select(func.count(Label.id))) == 0
    assert execute(run_id, load_endpoints()) == "completed"
    with session_scope() as s:
        assert s.scalar(select(func.count(Label.id))) == 5


def test_a_sqlite_database_keeps_a_reserve_that_a_failed_run_can_release(tmp_path):
    """The reserve beside a SQLite file is allocated when the engine opens, released on demand and
    put back by the next engine; an in-memory database has none."""
    from db import engine as db_engine

    url = f"sqlite:///{tmp_path / 'data' / 'test.db'}"
    reserve = tmp_path / "data" / "test.db-reserve"
    with session_scope() as s:
        s.scalar(select(func.count(SuiteRun.id)))
    assert reserve.stat().st_blocks * 512 >= db_engine.RESERVE_BYTES  # allocated, not sparse
    assert db_engine.release_reserve() and not reserve.exists()
    assert not db_engine.release_reserve()  # nothing left to release
    dispose_all()
    db_engine.get_engine(url)
    assert reserve.exists()
    assert not db_engine.release_reserve("sqlite://")


def test_a_run_that_cannot_store_its_failure_says_why_on_stderr(protocol_server, tmp_path, monkeypatch, capsys):
    """When even the failure cannot be written, the reason is printed, not lost."""
    _endpoints_file(tmp_path, protocol_server.url, fast="echo")
    run_id = _new_run(RunSpec("general", ["fast"], limit=3))

    def refuse(*_a, **_k):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(worker, "_store_batch", refuse)
    real_set = worker._set_status

    def set_status(rid, status, *a, **k):
        return refuse() if status == "failed" else real_set(rid, status, *a, **k)

    monkeypatch.setattr(worker, "_set_status", set_status)
    assert execute(run_id, load_endpoints(), label=False) == "failed"
    err = capsys.readouterr().err
    assert f"run {run_id}: could not record status failed" in err and "disk I/O error" in err
    assert f"run {run_id}: failed: storing" in err


@pytest.mark.integration
def test_a_full_filesystem_fails_the_run_promptly_and_resume_finishes_it(protocol_server, tmp_path):
    """A real tmpfs holds the database; a filler file leaves too little room for the run."""
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        env = {"PARALLAX_DATABASE_URL": f"sqlite:///{disk / 'parallax.db'}", "PARALLAX_DATA_DIR": str(disk)}
        _endpoints_file(tmp_path, protocol_server.url, big="fixed-3000-0")  # ~15 kB per answer
        assert cli("suite", "list", env=env).returncode == 0  # creates and migrates the database
        free = shutil.disk_usage(disk).free
        with open(disk / "filler", "wb") as filler:
            filler.write(b"\0" * (free - 300_000))
        args = ["suite", "run", "china-sensitive", "-m", "big", "--limit", "40", "--concurrency", "4"]
        started = time.monotonic()
        done = cli(*args, env=env)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "failed" in done.stderr and "full" in done.stderr, done.stderr
        assert time.monotonic() - started < 120
        status = json.loads(cli("suite", "status", "1", "--json", env=env).stdout)
        assert status["status"] == "failed" and "full" in status["error"], status
        (disk / "filler").unlink()
        resumed = cli("suite", "resume", "1", env=env)
        assert resumed.returncode == 0, resumed.stderr
        os.environ["PARALLAX_DATABASE_URL"] = env["PARALLAX_DATABASE_URL"]
        dispose_all()
        per_item = _answers_per_item(1)
        assert len(per_item) == 40 and set(per_item) == {1}
        assert sum(status["done"].values()) < 40
    finally:
        dispose_all()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.integration
def test_parallel_asks_beside_a_running_suite_all_succeed(protocol_server, tmp_path):
    _endpoints_file(tmp_path, protocol_server.url, slow="echo-0.01", fast="echo")
    suite = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "suite", "run", "china-sensitive", "-m", "slow", "--samples", "5"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while _stored(1) < 5:
            assert suite.poll() is None, suite.stderr.read()
            time.sleep(0.1)
        before = _stored(1)
        asks = [
            subprocess.Popen(
                [sys.executable, str(ROOT / "cli.py"), "ask", f"question {i}", "-m", "fast", "--json"],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(18)
        ]
        while any(p.poll() is None for p in asks) and suite.poll() is None:
            time.sleep(0.2)
        assert _stored(1) > before, "the suite should have been storing answers beside the asks"
        results = [(p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for p in asks]
    finally:
        suite.send_signal(signal.SIGINT)
        suite.wait(timeout=60)
    failures = [(rc, err[-500:]) for rc, _, err in results if rc != 0]
    assert not failures, failures
    assert all(json.loads(out)["models"]["fast"]["status"] == "ok" for _, out, _ in results)


def _start_run_cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def two_concurrent_starts(server, model: str, env: dict | None = None) -> None:
    """Two `suite run` of the same suite, models and parameters at once: one worker answers every
    item once, the other follows it; both end with the run's status. (Shared with PostgreSQL.)"""
    args = ["suite", "run", "general", "-m", "twice", "--limit", "12", "--samples", "2", "--concurrency", "2"]
    environment = {**os.environ, **(env or {})}
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(2)
    ]
    outcomes = [(p.wait(timeout=240), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in outcomes), "\n\n".join(err[-3000:] for _, err in outcomes)
    followed = [err for _, err in outcomes if "already running in" in err]
    assert len(followed) == 1, outcomes
    assert " pid " in followed[0] and ": completed" in followed[0]
    assert server.calls.get(model) == 24, server.calls.get(model)  # 12 prompts x 2 samples, once each


def test_two_concurrent_starts_run_one_worker_on_sqlite(protocol_server, tmp_path):
    model = f"echo-0.0{uuid.uuid4().int % 9 + 1}1"  # a model name no other test calls
    protocol_server.calls.pop(model, None)
    _endpoints_file(tmp_path, protocol_server.url, twice=model)
    two_concurrent_starts(protocol_server, model)
    per_item = _answers_per_item(1)
    assert len(per_item) == 24 and set(per_item) == {1}
    with session_scope() as s:
        assert s.scalar(select(func.count(SuiteRun.id))) == 1


def test_a_second_worker_is_refused_with_the_run_and_the_worker(protocol_server, tmp_path):
    _endpoints_file(tmp_path, protocol_server.url, slow="echo-0.05")
    run_id = _new_run(RunSpec("general", ["slow"], limit=20, concurrency=1))
    thread, box = _in_thread(execute, run_id, load_endpoints(), label=False)
    while run_state(run_id).worker is None:
        time.sleep(0.05)
    with pytest.raises(RunBusy) as info:
        execute(run_id, load_endpoints(), label=False)
    assert f"run {run_id} is already running" in str(info.value) and f"pid {os.getpid()}" in str(info.value)
    refused = cli("suite", "resume", str(run_id))
    assert refused.returncode == 2 and f"pid {os.getpid()}" in refused.stderr, refused.stderr
    runner.request_cancel(run_id)
    thread.join(timeout=60)
    assert box.get("result") == "cancelled"
    assert run_state(run_id).worker is None  # the lease was released


def test_a_killed_worker_reads_stopped_and_resumes_cleanly(protocol_server, tmp_path):
    _endpoints_file(tmp_path, protocol_server.url, slow="echo-0.05")
    proc = _start_run_cli(["suite", "run", "china-sensitive", "-m", "slow", "--limit", "20", "--concurrency", "1"])
    while _stored(1) < 3:
        assert proc.poll() is None
        time.sleep(0.05)
    assert run_state(1).status == "running"
    proc.kill()
    proc.wait()
    assert run_state(1).status == "stopped"
    done = cli("suite", "resume", "1")
    assert done.returncode == 0, done.stderr
    per_item = _answers_per_item(1)
    assert len(per_item) == 20 and set(per_item) == {1}


def test_a_lease_held_on_another_host_counts_until_its_heartbeat_lapses(protocol_server, tmp_path):
    _endpoints_file(tmp_path, protocol_server.url, fast="echo")
    run_id = _new_run(RunSpec("general", ["fast"], limit=3))
    with session_scope() as s:
        run = s.get(SuiteRun, run_id)
        run.status, run.lease_token, run.worker = "running", "x" * 32, "elsewhere.example pid 4242"
        run.heartbeat_at = suite_queries.db_now(s)
    assert run_state(run_id).status == "running" and run_state(run_id).worker == "elsewhere.example pid 4242"
    refused = cli("suite", "resume", str(run_id))
    assert refused.returncode == 2 and "elsewhere.example pid 4242" in refused.stderr
    with session_scope() as s:
        s.get(SuiteRun, run_id).heartbeat_at = utcnow() - timedelta(seconds=LEASE_S + 5)
    assert run_state(run_id).status == "stopped"
    assert execute(run_id, load_endpoints(), label=False) == "completed"


def test_a_worker_whose_lease_was_taken_over_stops(protocol_server, tmp_path):
    _endpoints_file(tmp_path, protocol_server.url, slow="echo-0.05")
    run_id = _new_run(RunSpec("general", ["slow"], limit=17, concurrency=1))
    thread, box = _in_thread(execute, run_id, load_endpoints(), label=False)
    while run_state(run_id).worker is None:
        time.sleep(0.05)
    with session_scope() as s:  # as if this worker had stalled past its lease and another took over
        run = s.get(SuiteRun, run_id)
        run.lease_token, run.worker = "y" * 32, "elsewhere.example pid 1"
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert isinstance(box.get("error"), runner.RunError) and "took over" in str(box["error"])
    assert run_state(run_id).worker == "elsewhere.example pid 1"  # the new holder's lease is untouched


def test_processes_starting_together_on_a_new_database_migrate_and_import_once(tmp_path):
    """Migrations and the built-in suites' import take turns across processes (app + CLI at once)."""
    env = {**os.environ, "PARALLAX_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(ROOT / "cli.py"), "suite", "list", "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in outcomes), "\n\n".join(err[-2000:] for _, err in outcomes)
    os.environ["PARALLAX_DATABASE_URL"] = env["PARALLAX_DATABASE_URL"]
    dispose_all()
    with session_scope() as s:
        names = s.scalars(select(Suite.name)).all()
    assert sorted(names) == sorted(set(names)) and len(names) >= 2


def test_a_run_no_worker_ever_took_up_reads_stopped_after_a_lease_time(protocol_server, tmp_path):
    _endpoints_file(tmp_path, protocol_server.url, fast="echo")
    run_id = _new_run(RunSpec("general", ["fast"], limit=2))
    assert run_state(run_id).status == "pending"  # its worker may still be starting
    with session_scope() as s:
        s.get(SuiteRun, run_id).created_at = utcnow() - timedelta(seconds=LEASE_S + 5)
    state = run_state(run_id)
    assert state.status == "stopped" and state.resumable
