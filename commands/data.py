"""Bringing data in and judging it from the terminal: import answers and battles from other tools
(or the bundled example study), and record a named vote on a two-answer turn."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from commands.common import ID_RANGE, err, fail, fail_problems, open_db_or_fail, plain
from lib.files import InputFileError, check_input_file
from lib.present import cli_hint, plural
from lib.safety import json_text
from lib.vocab import Winner

app = typer.Typer()
PHASES = {"reading": "reading", "storing": "storing", "labelling": "labelling with the detector"}


def _run_with_progress(action):
    """Run an import action with a rich progress bar on stderr (reading, storing, labelling): on a
    terminal only (piped, a bar would print only its last state, even above an error)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not err.is_terminal:
        return action(None)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as bar:
        task = bar.add_task("reading", total=None)

        def show(phase: str, done: int, total: int) -> None:
            bar.update(task, description=PHASES.get(phase, phase), completed=done, total=total or None)

        try:
            return action(show)
        except BaseException:
            bar.live.transient = True  # a refused file leaves its message, not a half-filled bar above it
            raise


@app.command("import")
def import_(
    file: Annotated[
        Optional[Path],
        typer.Argument(
            help="JSONL, JSON or CSV answers (.gz too), promptfoo's results.json, or FastChat/LMArena battles."
        ),
    ] = None,
    example: Annotated[
        bool, typer.Option("--example", help="Load the bundled example study instead of a file.")
    ] = False,
    source: Annotated[Optional[str], typer.Option(help="Name the origin (default: the file name).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was imported as one JSON object.")] = False,
) -> None:
    """Import answers (or pairwise battles) from a file; a second import of the same rows adds nothing."""
    from lib.imports import ImportProblems, import_file, load_example

    if example == (file is not None):
        fail("give a FILE to import, or --example for the bundled example study")
    if file is not None:
        try:
            check_input_file(file)
        except InputFileError as exc:
            fail(f"{exc} (nothing was imported)")
    open_db_or_fail()
    try:
        if example:
            result = _run_with_progress(lambda show: load_example(progress=show))
        else:
            result = _run_with_progress(lambda show: import_file(file, source=source, progress=show))
    except ImportProblems as exc:
        fail_problems("the example study" if example else file, exc.problems, "nothing was imported")
    for warning in result.warnings:
        err.print(f"warning: {warning}", highlight=False)
    if as_json:
        data = asdict(result)
        data["agreement_rate"] = result.agreement.rate if result.agreement else None
        print(json_text(data))
        return
    _summary(result)


def _summary(result) -> None:
    """What an import did, in a few lines on stderr."""
    what = "battles" if result.format == "battles" else "answers"
    if result.added_nothing:
        before = "the one was" if result.records == 1 else f"all {result.records:,} were"
        done = (
            f"; {plural(result.detector_labels, 'answer')} left unlabelled then, now labelled"
            if result.detector_labels
            else ""
        )
        err.print(f"{result.file}: {what}: {before} imported before; nothing added{done}", highlight=False)
        return
    err.print(
        f"imported {plural(result.answers_added, 'answer')}"
        + (f" and {plural(result.votes_added, 'vote')}" if result.votes_added else "")
        + f" in {plural(result.conversations_added, 'conversation')} from {result.file} ({result.format}) "
        f"as source {result.source!r} in {result.seconds:.1f} s",
        markup=False,
        highlight=False,
    )
    skipped = result.already_stored + result.duplicates
    if skipped:
        err.print(
            f"skipped {result.already_stored} already imported and {result.duplicates} repeated in the file",
            highlight=False,
        )
    if result.suite:
        err.print(f"prompts are in the suite {result.suite!r}", markup=False, highlight=False)
    agreement = result.agreement
    if agreement and agreement.compared:
        err.print(
            f"labels: {result.imported_labels} came with the file (source import:{result.source}); "
            f"the detector agrees on {agreement.agreed} of {agreement.compared} ({agreement.rate:.1%})",
            markup=False,
            highlight=False,
        )
    if result.vectors_added:
        err.print(
            f"embeddings: {result.vectors_added} precomputed vectors stored, so the first analysis embeds nothing",
            highlight=False,
        )
    err.print(f"see them on the Analysis and History pages, or {cli_hint('analyze --json')}", highlight=False)


@app.command()
def vote(
    exchange_id: Annotated[
        int, typer.Argument(help="The exchange id of the turn, as `ask` prints it (its last line).", **ID_RANGE)
    ],
    winner: Annotated[str, typer.Argument(help="a, b, tie or both_bad (A is the first model asked, -m).")],
) -> None:
    """Record a named vote between the two answers of one turn (A is the first model asked)."""
    from lib.conversations import VoteError
    from lib.conversations import vote as record_vote
    from lib.present import WINNER_TEXT

    winner = winner.strip().lower()  # "A" as the help and the confirmation write it
    if winner not in Winner.ALL:
        fail(f"the winner must be one of {', '.join(Winner.ALL)}, not {winner!r}")
    open_db_or_fail()
    try:
        recorded = record_vote(exchange_id, winner)
    except VoteError as exc:
        fail(str(exc))
    sides = f"A is {recorded.a}, B is {recorded.b}"
    err.print(
        plain(f"recorded vote {recorded.id} on exchange {exchange_id}: {WINNER_TEXT[winner]} ({sides})"),
        highlight=False,
    )
