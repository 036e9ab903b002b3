"""Labelling stored answers: the detector (CPU work) runs outside any transaction, then the
verdicts are written in one short one, so SQLite's write lock is held for milliseconds.

Used right after an answer is stored (ask, suite runs, imports), for the backlog
(`classify --db`, with the detector or an LLM judge), and for a person's correction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from db import labels
from db.engine import session_scope
from db.vocab import Label, LabelSource, Status

if TYPE_CHECKING:
    from lib.deflection import Verdict


@dataclass(frozen=True)
class LabelJob:
    """One stored answer to label."""

    response_id: int
    prompt: str
    text: str
    status: str


def _labellable(job: LabelJob) -> bool:
    # a failed call without text is not an answer: it gets no label
    return not (job.status == Status.ERROR and not job.text)


def label_responses(jobs: list[LabelJob]) -> dict[int, Verdict]:
    """Label stored answers with the detector; returns the verdict written for each response id
    (a failed call without text gets none)."""
    from lib.deflection import classify, source_name

    jobs = [j for j in jobs if _labellable(j)]
    if not jobs:
        return {}
    verdicts = classify([{"prompt": j.prompt, "response": j.text, "status": j.status} for j in jobs])
    source = source_name()
    with session_scope() as session:
        for job, verdict in zip(jobs, verdicts, strict=True):
            labels.set_label(session, job.response_id, verdict.label, source, verdict.confidence, verdict.rule)
    return {job.response_id: verdict for job, verdict in zip(jobs, verdicts, strict=True)}


@dataclass(frozen=True)
class Backlog:
    """What labelling a backlog did: labels written, and verdicts that failed (a judge call
    that got no reply), left unlabelled, with why (first of each reason)."""

    labelled: int
    failed: int = 0
    reasons: tuple[str, ...] = ()


def label_backlog(source: str, verdicts_for: Callable[[list[dict]], list], batch: int = 512, on_batch=None) -> Backlog:
    """Label every stored response that `source` has not labelled yet, `batch` at a time.

    `verdicts_for(items)` returns one Verdict per dict with prompt, response and status (the
    detector's `classify` or a judge). Each batch is read, labelled outside a transaction, then
    written. A verdict with `error` (a failed judge call) is not stored: the response stays
    unlabelled for the next run, and is counted in `failed`."""
    done, failed, reasons, after = 0, 0, [], 0
    while True:
        with session_scope() as session:
            jobs = [
                LabelJob(r.id, r.exchange.prompt, r.text, r.status)
                for r in labels.responses_without_label(session, source, limit=batch, after_id=after)
            ]
        if not jobs:
            return Backlog(done, failed, tuple(reasons))
        after = jobs[-1].response_id  # failed ones are skipped this run, not asked again and again
        verdicts = verdicts_for([{"prompt": j.prompt, "response": j.text, "status": j.status} for j in jobs])
        with session_scope() as session:
            for job, verdict in zip(jobs, verdicts, strict=True):
                if verdict.error:
                    failed += 1
                    if verdict.error not in reasons:
                        reasons.append(verdict.error)
                    continue
                labels.set_label(session, job.response_id, verdict.label, source, verdict.confidence, verdict.rule)
                done += 1
        if on_batch:
            on_batch(done)


def takes_human_label(status: str, text: str | None) -> bool:
    """Whether an answer can take a person's label: it finished (status ok) with some text."""
    return status == Status.OK and bool((text or "").strip())


def save_human_label(response_id: int, label: str) -> None:
    """Store a person's label for an answer (it wins over the detector everywhere).

    Raises ValueError for a label that is not one of Label.ALL, an answer that does not exist, one
    that did not finish (error, blocked, interrupted: its status is what happened, it is left out
    of every rate, and its partial text is no training row) or one with no text."""
    if label not in Label.ALL:
        raise ValueError(f"label must be one of {', '.join(Label.ALL)}, not {label!r}")
    with session_scope() as session:
        state = labels.response_state(session, response_id)
        if state is None:
            raise ValueError(f"there is no answer {response_id}")
        status, text = state
        if status != Status.OK:
            raise ValueError(f"answer {response_id} did not finish ({status}): it takes no label of a person")
        if not text.strip():
            raise ValueError(f"answer {response_id} has no text (its label is {Label.EMPTY!r}): it takes no other")
        labels.set_label(session, response_id, label, LabelSource.HUMAN, 1.0, LabelSource.HUMAN)
