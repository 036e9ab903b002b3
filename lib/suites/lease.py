"""One worker per suite run: a lease in the database with a heartbeat.

A worker takes a run's lease with a compare-and-set UPDATE (db/suites.take_lease: the row lock
on PostgreSQL, the write lock on SQLite), renews it every HEARTBEAT_S, and frees it when done.
A lease not renewed for LEASE_S — by the database's clock, so workers on several hosts agree —
belongs to a worker that is gone; on the same host a vanished process tells sooner. The pid is
only that quicker signal: the heartbeat decides."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime

from db import suites
from db.engine import session_scope
from db.models import SuiteRun

HEARTBEAT_S = 1.0  # how often a worker renews its lease (and looks for a cancel request)
LEASE_S = 30.0  # a lease not renewed for this long belongs to a worker that is gone


class LeaseHeld(RuntimeError):
    """A live worker holds the lease; `worker` is its 'HOST pid N'."""

    def __init__(self, run_id: int, worker: str | None):
        super().__init__(f"run {run_id} is already running in another worker ({worker or 'unknown'})")
        self.run_id, self.worker = run_id, worker


class LeaseLost(RuntimeError):
    """This worker's lease was taken over (it stopped renewing for too long); it must stop."""


@dataclass(frozen=True)
class Lease:
    """This worker's hold on one run."""

    run_id: int
    token: str
    worker: str


def worker_name() -> str:
    """This process as a lease holder: 'HOST pid N'."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return True  # it exists but belongs to someone else
    return True


def holder_alive(run: SuiteRun, now: datetime) -> bool:
    """Whether a live worker holds the run's lease at the database time `now`."""
    if not run.lease_token or run.heartbeat_at is None:
        return False
    if (now - run.heartbeat_at).total_seconds() > LEASE_S:
        return False
    host, _, pid = (run.worker or "").partition(" pid ")
    if host == socket.gethostname() and pid.isdigit():
        return _pid_alive(int(pid))
    return True


def acquire(run_id: int) -> Lease:
    """Take the run's lease; LeaseHeld naming the live holder, LookupError when there is no run."""
    token, me = secrets.token_hex(16), worker_name()
    with session_scope() as session:
        run = suites.get_run(session, run_id)
        if run is None:
            raise LookupError(f"there is no run {run_id}")
        now = suites.db_now(session)
        if holder_alive(run, now):
            raise LeaseHeld(run_id, run.worker)
        if suites.take_lease(session, run_id, run.lease_token, token, me, now):
            return Lease(run_id, token, me)
    with session_scope() as session:  # another worker took it between our read and our write
        raise LeaseHeld(run_id, suites.get_run(session, run_id).worker)


def renew(lease: Lease) -> str:
    """Renew the lease; the run's stored status. LeaseLost when another worker has taken it."""
    with session_scope() as session:
        status = suites.renew_lease(session, lease.run_id, lease.token, suites.db_now(session))
    if status is None:
        raise LeaseLost(f"run {lease.run_id}: another worker took over the lease; this one stops")
    return status


def release(lease: Lease) -> None:
    """Free the lease if it is still ours."""
    with session_scope() as session:
        suites.release_lease(session, lease.run_id, lease.token)
