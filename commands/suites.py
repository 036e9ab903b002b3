"""Probe suites from the terminal: list, show, import, run, resume, cancel, status, results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from commands.common import (
    COUNT_RANGE,
    ID_RANGE,
    TEMPERATURE_HELP,
    TEMPERATURE_RANGE,
    err,
    fail,
    fail_problems,
    heading,
    load_endpoints_or_fail,
    open_db_or_fail,
    out,
    plain,
)
from lib.files import NEWLINE, InputFileError, check_input_file
from lib.present import cli_hint, plural
from lib.safety import json_text

app = typer.Typer(help="Probe suites: list, show, import, run, status, results.", no_args_is_help=True)
SUITE_NAME_HELP = "The suite's name (its newest version), or NAME@VERSION for an older one (see suite list)."


@app.command("list")
def suite_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every stored suite with its prompt counts."""
    from lib.suites.definitions import list_suites

    open_db_or_fail()
    rows = [
        {
            "name": x.name,
            "version": x.version,
            "prompts": len(x.prompts),
            "description": x.description,
            "languages": x.languages,
            "topics": x.topics,
        }
        for x in list_suites()
    ]
    if as_json:
        print(json_text(rows, indent=2))
        return
    table = Table("name", "version", "prompts", "languages", "topics")
    for r in rows:
        table.add_row(
            plain(r["name"]),
            plain(r["version"]),
            str(r["prompts"]),
            plain(",".join(r["languages"])),
            str(len(r["topics"])),
        )
    out.print(table)


@app.command("show")
def suite_show(
    name: Annotated[str, typer.Argument(help=SUITE_NAME_HELP)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A suite with its prompts (id, text, language, topic, kind, twin and control keys)."""
    from lib.suites.definitions import show_suite_or_why

    open_db_or_fail()
    suite, why = show_suite_or_why(name)
    if suite is None:
        fail(f"{why} (see {cli_hint('suite list')})")
    data = {"name": suite.name, "version": suite.version, "description": suite.description, "prompts": suite.prompts}
    if as_json:
        print(json_text(data, indent=2))
        return
    about = f": {data['description']}" if data["description"] else ""
    out.print(Text.assemble(plain(data["name"], "bold"), plain(f" v{data['version']}{about}")))
    for p in data["prompts"]:
        text = NEWLINE.sub("\n    ", p["text"])  # later lines (LF, CRLF, lone CR) indented: never listing lines
        links = "".join(f", {link} {p[link]}" for link in ("twin", "control") if p.get(link))
        out.print(plain(f"{p['id']} [{p['language']}, {p['topic']}, {p['kind']}{links}] {text}"), highlight=False)


@app.command("import")
def suite_import(
    file: Path,
    version: Annotated[
        Optional[str],
        typer.Option(
            "--version",
            help="The version to store it under where the file gives none (a .txt or .csv list: 1 by default); "
            "import a changed list under a new one.",
        ),
    ] = None,
) -> None:
    """Validate a suite file (YAML, JSONL, a .txt prompt list or a .csv table) completely, then store it."""
    from lib.suites.definitions import SuiteError, import_path

    try:
        check_input_file(file)
    except InputFileError as exc:
        fail(f"{exc} (nothing was imported)")
    open_db_or_fail()
    try:
        imported = import_path(file, version or None)
    except SuiteError as exc:
        fail_problems(file, exc.problems, "nothing was imported")
    for warning in imported.warnings:
        err.print(Text.assemble(("warning:", "yellow"), plain(f" {warning}")))
    err.print(
        f"{'imported' if imported.created else 'already imported'} {imported.name} v{imported.version}: "
        f"{plural(imported.prompts, 'prompt')}"
    )


def _progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]run {task.fields[run]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}", markup=False),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,  # piped, a bar would leave its last state in the file
    )


def _detail(done: dict[str, int], failed: dict[str, int]) -> str:
    """Per-endpoint progress as plain text (endpoint ids are user text: printed literally)."""
    from lib.safety import terminal_text

    return terminal_text(
        " ".join(
            f"{e}:{done.get(e, 0)}" + (f"/{failed[e]} failed" if failed.get(e) else "")
            for e in sorted(set(done) | set(failed))
        )
    )


def _run_with_progress(run_id: int, endpoints) -> str:
    """Work on the run in this process with a progress bar; its final status (RunBusy if taken)."""
    from lib.suites.worker import execute

    with _progress_bar() as bar:
        task = bar.add_task("run", total=None, run=run_id, detail="")

        def show(p) -> None:
            bar.update(task, total=p.total, completed=p.completed, detail=_detail(p.done, p.failed))

        return execute(run_id, endpoints, on_progress=show)


def _follow(run_id: int, worker: str | None) -> str:
    """Show the progress of the worker already on the run until it ends; its final status."""
    from lib.suites.runner import follow

    err.print(
        f"run {run_id} is already running in {worker or 'another worker'}; "
        "following its progress (Ctrl-C stops following, not the run)",
        highlight=False,
    )
    with _progress_bar() as bar:
        task = bar.add_task("run", total=None, run=run_id, detail="")

        def show(state) -> None:
            bar.update(task, total=state.total, completed=state.completed, detail=_detail(state.done, state.failed))

        try:
            return follow(run_id, show).status
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _finish(run_id: int, status: str) -> None:
    """Say how the run ended; a failed run names the reason and exits 1."""
    from lib.suites.runner import run_state
    from lib.vocab import RunStatus

    if status == RunStatus.FAILED:
        why = run_state(run_id).error or "(the reason could not be stored; see above)"
        err.print(f"run {run_id} failed: {why}", highlight=False)
        err.print(
            f"fix the cause, then {cli_hint(f'suite resume {run_id}')} continues where it stopped", highlight=False
        )
        raise typer.Exit(1)
    err.print(f"run {run_id}: {status} (see {cli_hint(f'suite results {run_id}')})", highlight=False)
    _print_failures(run_id, run_state(run_id).failed, err)


def _print_failures(run_id: int, failed: dict[str, int], console) -> None:
    """Each endpoint with failed items, with why its newest one failed, and how to retry them."""
    from lib.safety import terminal_text
    from lib.suites.runner import failure_reasons

    if not any(failed.values()):
        return
    reasons = failure_reasons(run_id)
    for endpoint_id, n in sorted(failed.items()):
        if n:
            why = " ".join(reasons.get(endpoint_id, "").split())
            why = why if len(why) <= 300 else why[:299] + "…"
            console.print(plain(terminal_text(f"  {endpoint_id}: {n} failed" + (f", last: {why}" if why else ""))))
    console.print(f"  {cli_hint(f'suite resume {run_id}')} retries the failed items", highlight=False)


@app.command("run")
def suite_run(
    name: Annotated[str, typer.Argument(help=SUITE_NAME_HELP)],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Endpoint id (repeat).")] = None,
    samples: Annotated[int, typer.Option(help="Answers per prompt and model (at most 1,000).")] = 1,
    limit: Annotated[Optional[int], typer.Option(help="Only the first K prompts.", **COUNT_RANGE)] = None,
    language: Annotated[Optional[str], typer.Option(help="en or zh.")] = None,
    topic: Annotated[Optional[str], typer.Option(help="Only this topic.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help=TEMPERATURE_HELP, **TEMPERATURE_RANGE)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most output tokens per answer.", **COUNT_RANGE)] = None,
    concurrency: Annotated[
        int,
        typer.Option(
            help="Requests at once per endpoint (the embedded model: at most 2 for all its endpoints, 1 on the"
            " fallback server)."
        ),
    ] = 4,
    new: Annotated[bool, typer.Option("--new", help="Start a fresh run even if the same one exists.")] = False,
) -> None:
    """Run (or resume) a suite against models; answers are stored and labelled."""
    from lib.providers.endpoints import key_is_set
    from lib.suites.runner import RunBusy, RunError, RunSpec, create_run

    endpoints = load_endpoints_or_fail()
    spec = RunSpec(
        suite=name,
        endpoints=list(dict.fromkeys(model or [])),
        samples=samples,
        temperature=temperature,
        max_tokens=max_tokens,
        language=language,
        topic=topic,
        limit=limit,
        concurrency=concurrency,
    )
    open_db_or_fail()
    try:
        started = create_run(spec, endpoints, new=new)
    except RunError as exc:
        fail(str(exc))
    run_id, state = started.run_id, started.state
    for endpoint_id in spec.endpoints:
        if not key_is_set(endpoints[endpoint_id]):
            warning = f" {endpoint_id} has no key ({endpoints[endpoint_id].key_env}); its items will fail"
            warning += " and can be retried later"
            err.print(Text.assemble(("warning:", "yellow"), plain(warning)))
    if started.already_complete:
        err.print(
            f"run {run_id} is already complete ({plural(state.total, 'answer')}); nothing added. "
            "Use --new for a fresh run."
        )
        return
    if started.running_elsewhere:
        _finish(run_id, _follow(run_id, state.worker))
        return
    if started.resumed:
        err.print(f"resuming run {run_id}: {state.completed} of {state.total} answers already done")
    try:
        status = _run_with_progress(run_id, endpoints)
    except RunBusy as exc:  # another start took the run between our look and our lease
        status = _follow(run_id, exc.worker)
    except RunError as exc:  # the lease was taken over by another worker
        fail(str(exc))
    _finish(run_id, status)


@app.command("resume")
def suite_resume(run: Annotated[int, typer.Argument(**ID_RANGE)]) -> None:
    """Continue an existing run (what the suites page starts in the background); refused, naming
    the worker's host and pid, while another worker is on it."""
    from lib.suites.runner import RunBusy, RunError, check_resumable

    endpoints = load_endpoints_or_fail()
    open_db_or_fail()
    try:
        check_resumable(run, endpoints)
        status = _run_with_progress(run, endpoints)
    except RunBusy as exc:
        fail(f"{exc}; follow it with {cli_hint(f'suite status {run}')}")
    except RunError as exc:
        fail(str(exc))
    _finish(run, status)


@app.command("cancel")
def suite_cancel(run: Annotated[int, typer.Argument(**ID_RANGE)]) -> None:
    """Ask a running run to stop (it can be resumed later)."""
    from lib.suites.runner import RunError, request_cancel

    open_db_or_fail()
    try:
        status = request_cancel(run)
    except RunError as exc:
        fail(str(exc))
    if status == "cancelling":
        err.print(f"asked run {run} to stop")
    else:
        err.print(f"run {run} has already ended ({status}); nothing to stop", highlight=False)


@app.command("status")
def suite_status(
    run: Annotated[int, typer.Argument(**ID_RANGE)], as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Progress of a run: its effective state (stopped when its worker is gone), answers done and
    failed per model."""
    from lib.suites.runner import RunError, failure_reasons, run_state

    open_db_or_fail()
    try:
        state = run_state(run)
    except RunError as exc:
        fail(str(exc))
    if as_json:
        print(
            json_text(
                {
                    "run": run,
                    "status": state.status,
                    "stored_status": state.stored_status,
                    "total": state.total,
                    "done": state.done,
                    "failed": state.failed,
                    "worker": state.worker,
                    "error": state.error,
                    "settings": state.settings,
                    "failure_reasons": failure_reasons(run) if any(state.failed.values()) else {},
                    "suite": state.suite,
                    "suite_version": state.suite_version,
                }
            )
        )
        return
    out.print(f"run {run}: {state.status}, {state.completed}/{state.total} answers", highlight=False)
    out.print(plain(f"  {state.suite} v{state.suite_version}: {state.settings}"), highlight=False)
    if state.worker:
        out.print(f"  worker: {state.worker}", highlight=False)
    if state.error:
        out.print(f"  why it failed: {state.error}", highlight=False)
    for endpoint_id in sorted(set(state.done) | set(state.failed)):
        out.print(
            plain(f"  {endpoint_id}: {state.done.get(endpoint_id, 0)} done, {state.failed.get(endpoint_id, 0)} failed")
        )
    if not state.live:
        _print_failures(run, state.failed, out)


@app.command("results")
def suite_results(
    run: Annotated[int, typer.Argument(**ID_RANGE)],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    compare: Annotated[Optional[int], typer.Option(help="Compare with this other run.", **ID_RANGE)] = None,
) -> None:
    """Not-answered rates per model × topic, raw (Wilson 95%) and corrected for the detector's errors
    (bootstrap 95%); English/Chinese gap; probe-vs-control asymmetry; answers left out of rates."""
    from dataclasses import asdict

    from lib.suites.results import (
        UnknownRun,
        agreement_table,
        asymmetry_table,
        card_line,
        comparison_table,
        gap_table,
        left_out_table,
        rates_table,
        results,
    )

    open_db_or_fail()
    try:
        data = results(run, compare_with=compare)
    except UnknownRun as exc:
        fail(str(exc))
    if as_json:
        body = {k: v for k, v in asdict(data).items() if v is not None}
        print(json_text(body, default=str))
        return
    if data.error:
        out.print(plain(data.error))
        return
    if data.note:
        out.print(plain(data.note))
    _print_table("Not answered per model and topic (raw, Wilson 95%; corrected, bootstrap 95%)", rates_table(data))
    _print_table("English vs Chinese (twin prompts)", gap_table(data))
    asymmetry = [a for a in asymmetry_table(data) if a["topic"] == "(all)" and a["asymmetry"] != "–"]
    if asymmetry:
        heading("Probe vs control (how much more each model avoids the sensitive question than its twin)")
    for a in asymmetry:
        line = (
            f"  {a['model']}: probes {a['probes']} vs controls {a['controls']} (asymmetry {a['asymmetry']} raw, "
            f"{a['asymmetry corrected']} corrected)"
        )
        out.print(plain(line), highlight=False)
    left_out = [row for row in left_out_table(data) if row["answers"] != row["in rates"]]
    _print_table("Left out of rates (blocked, failed or interrupted, empty, unlabelled)", left_out)
    _print_table("Agreement with other labels (Cohen's kappa against the detector)", agreement_table(data))
    if data.detector_card:
        heading("Detector card")
        out.print(plain(f"  {card_line(data)}"), highlight=False)
    if data.comparison:
        _print_table(f"Compared with run {compare}", comparison_table(data))


def _print_table(title: str, rows: list[dict[str, str]]) -> None:
    """One section of the results: its heading, then its table (nothing when it has no rows)."""
    if not rows:
        return
    heading(title)
    table = Table(*rows[0])
    for row in rows:
        table.add_row(*(plain(value) for value in row.values()))
    out.print(table)
