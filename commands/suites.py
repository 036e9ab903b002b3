"""Probe suites from the terminal: list, show, import, run, resume, cancel, status, results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from commands.common import err, fail, load_endpoints_or_fail, open_db_or_fail, out

app = typer.Typer(help="Probe suites: list, show, import, run, status, results.", no_args_is_help=True)


def _suite_session():
    from db.engine import session_scope
    from lib.suites.definitions import ensure_builtin

    open_db_or_fail()
    with session_scope() as s:
        ensure_builtin(s)
    return session_scope


@app.command("list")
def suite_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every stored suite with its prompt counts."""
    from sqlalchemy import select

    from db.models import Suite

    scope = _suite_session()
    with scope() as s:
        rows = [
            {
                "name": x.name,
                "version": x.version,
                "prompts": len(x.prompts),
                "description": x.description,
                "languages": sorted({p.language for p in x.prompts}),
                "topics": sorted({p.topic for p in x.prompts}),
            }
            for x in s.scalars(select(Suite).order_by(Suite.name))
        ]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("name", "version", "prompts", "languages", "topics")
    for r in rows:
        table.add_row(r["name"], r["version"], str(r["prompts"]), ",".join(r["languages"]), str(len(r["topics"])))
    out.print(table)


@app.command("show")
def suite_show(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A suite with its prompts (id, text, language, topic, twin and control keys)."""
    from lib.suites.definitions import find_suite, prompt_dict

    scope = _suite_session()
    with scope() as s:
        suite = find_suite(s, name)
        if suite is None:
            fail(f"unknown suite {name!r} (see `python cli.py suite list`)")
        data = {
            "name": suite.name,
            "version": suite.version,
            "description": suite.description,
            "prompts": [prompt_dict(p) for p in suite.prompts],
        }
    if as_json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return
    out.print(f"[bold]{data['name']}[/] v{data['version']}: {data['description']}")
    for p in data["prompts"]:
        out.print(f"{p['id']} [{p['language']}, {p['topic']}, {p['kind']}] {p['text']}", highlight=False)


@app.command("import")
def suite_import(file: Path) -> None:
    """Validate a suite file (YAML or JSONL) completely, then store it."""
    from lib.suites.definitions import SuiteError, import_suite, load_file

    if not file.exists():
        fail(f"{file}: no such file")
    try:
        suite = load_file(file)
    except SuiteError as exc:
        err.print(f"[bold red]error:[/] {file} has {len(exc.problems)} problem(s); nothing was imported")
        for problem in exc.problems:
            err.print(f"  {problem}", highlight=False)
        raise typer.Exit(2) from None
    scope = _suite_session()
    try:
        with scope() as s:
            _, created = import_suite(s, suite)
    except SuiteError as exc:
        fail(str(exc))
    err.print(
        f"{'imported' if created else 'already imported'} {suite.name} v{suite.version}: {len(suite.prompts)} prompts"
    )


def _run_with_progress(run_id: int, endpoints) -> str:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from lib.suites.runner import execute

    with Progress(
        TextColumn("[bold]run {task.fields[run]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("run", total=None, run=run_id, detail="")

        def show(p) -> None:
            detail = " ".join(
                f"{e}:{p.done.get(e, 0)}" + (f"/[red]{p.failed[e]} failed[/]" if p.failed.get(e) else "")
                for e in sorted(set(p.done) | set(p.failed))
            )
            bar.update(task, total=p.total, completed=p.completed, detail=detail)

        return execute(run_id, endpoints, on_progress=show)


@app.command("run")
def suite_run(
    name: str,
    model: Annotated[list[str], typer.Option("--model", "-m", help="Endpoint id (repeat).")] = None,
    samples: Annotated[int, typer.Option(help="Answers per prompt and model.")] = 1,
    limit: Annotated[Optional[int], typer.Option(help="Only the first K prompts.")] = None,
    language: Annotated[Optional[str], typer.Option(help="en or zh.")] = None,
    topic: Annotated[Optional[str], typer.Option(help="Only this topic.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most output tokens per answer.")] = None,
    concurrency: Annotated[int, typer.Option(help="Requests at once per endpoint (embedded: always 1).")] = 4,
    new: Annotated[bool, typer.Option("--new", help="Start a fresh run even if the same one exists.")] = False,
) -> None:
    """Run (or resume) a suite against models; answers are stored and labelled."""
    from lib.providers.endpoints import key_is_set
    from lib.suites.runner import RunError, RunSpec, counts, create_or_resume

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
    scope = _suite_session()
    try:
        with scope() as s:
            run, resumed = create_or_resume(s, spec, endpoints, new=new)
            state = counts(s, run)
            run_id = run.id
    except RunError as exc:
        fail(str(exc))
    for endpoint_id in spec.endpoints:
        if not key_is_set(endpoints[endpoint_id]):
            err.print(
                f"[yellow]warning:[/] {endpoint_id} has no key ({endpoints[endpoint_id].key_env}); "
                "its items will fail and can be retried later"
            )
    if resumed and sum(state["done"].values()) >= state["total"]:
        err.print(
            f"run {run_id} is already complete ({state['total']} answers); nothing added. Use --new for a fresh run."
        )
        return
    if resumed:
        err.print(f"resuming run {run_id}: {sum(state['done'].values())} of {state['total']} answers already done")
    status = _run_with_progress(run_id, endpoints)
    err.print(f"run {run_id}: {status} (see `python cli.py suite results {run_id}`)")


@app.command("resume")
def suite_resume(run: int) -> None:
    """Continue an existing run (what the suites page starts in the background)."""
    from db.models import SuiteRun

    endpoints = load_endpoints_or_fail()
    scope = _suite_session()
    with scope() as s:
        row = s.get(SuiteRun, run)
        if row is None:
            fail(f"there is no run {run}")
        missing = [e for e in row.endpoints if e not in endpoints]
    if missing:
        fail(f"run {run} uses model(s) no longer configured: {', '.join(missing)}")
    status = _run_with_progress(run, endpoints)
    err.print(f"run {run}: {status}")


@app.command("cancel")
def suite_cancel(run: int) -> None:
    """Ask a running run to stop (it can be resumed later)."""
    from lib.suites.runner import request_cancel

    open_db_or_fail()
    request_cancel(run)
    err.print(f"asked run {run} to stop")


@app.command("status")
def suite_status(run: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Progress of a run: answers done and failed per model."""
    from db.models import SuiteRun
    from lib.suites.runner import counts

    open_db_or_fail()
    from db.engine import session_scope

    with session_scope() as s:
        row = s.get(SuiteRun, run)
        if row is None:
            fail(f"there is no run {run}")
        state = counts(s, row)
    if as_json:
        print(json.dumps({"run": run, **state}))
        return
    out.print(f"run {run}: {state['status']}, {sum(state['done'].values())}/{state['total']} answers")
    for endpoint_id in sorted(set(state["done"]) | set(state["failed"])):
        out.print(
            f"  {endpoint_id}: {state['done'].get(endpoint_id, 0)} done, {state['failed'].get(endpoint_id, 0)} failed"
        )


@app.command("results")
def suite_results(
    run: int,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    compare: Annotated[Optional[int], typer.Option(help="Compare with this other run.")] = None,
) -> None:
    """Label rates per model × topic (Wilson 95%), English/Chinese gap, probe-vs-control asymmetry."""
    from db.models import SuiteRun
    from lib.suites.results import compare_runs, results

    open_db_or_fail()
    from db.engine import session_scope

    with session_scope() as s:
        for run_id in filter(None, (run, compare)):
            if s.get(SuiteRun, run_id) is None:
                fail(f"there is no run {run_id}")
    data = results(run)
    if compare:
        data["comparison"] = compare_runs(run, compare)
    if as_json:
        print(json.dumps(data, ensure_ascii=False, default=str))
        return
    if data.get("error"):
        out.print(data["error"])
        return
    table = Table("model", "topic", "n", "not answered [95% CI]", "refused", "deflected", "blocked")
    for r in data["rates"]:
        na = r["not_answered"]
        table.add_row(
            r["model"],
            r["topic"],
            str(r["n"]),
            f"{na['rate']:.0%} [{na['low']:.0%}–{na['high']:.0%}]",
            f"{r['refused']['rate']:.0%}",
            f"{r['deflected']['rate']:.0%}",
            f"{r['blocked']['rate']:.0%}",
        )
    out.print(table)
    for g in data["language_gap"]:
        out.print(
            f"{g['model']}: not answered en {g['en']['rate']:.0%} vs zh {g['zh']['rate']:.0%} (gap {g['gap']:+.0%})"
        )
    for a in data["asymmetry"]:
        if a["topic"] == "(all)" and a["asymmetry"] is not None:
            out.print(
                f"{a['model']}: probes {a['probe']['rate']:.0%} vs controls {a['control']['rate']:.0%} "
                f"(asymmetry {a['asymmetry']:+.0%})"
            )
