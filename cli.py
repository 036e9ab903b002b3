"""Parallax without a browser: the same capabilities as the app, from the terminal.

Usage errors (bad input the user can fix) print one clear message and exit 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Compare language models side by side.")
err = Console(stderr=True, soft_wrap=True)
out = Console()


def fail(message: str) -> None:
    """Print a usage error and exit 2."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _endpoints():
    from lib.endpoints import EndpointConfigError, load_endpoints

    try:
        return load_endpoints()
    except EndpointConfigError as exc:
        fail(str(exc))


def _open_db() -> None:
    from db.engine import DatabaseUnavailable, get_engine

    try:
        get_engine()
    except DatabaseUnavailable as exc:
        fail(str(exc))


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List every endpoint with its state (ready, key missing, local server down)."""
    from lib.endpoints import endpoint_state

    rows = []
    for endpoint in _endpoints().values():
        state = endpoint_state(endpoint)
        rows.append(
            {
                "id": endpoint.id,
                "name": endpoint.name,
                "kind": endpoint.kind,
                "model": endpoint.model,
                "key_env": endpoint.key_env,
                "ready": state.ready,
                "status": state.status,
                "detail": state.detail,
            }
        )
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table("id", "name", "kind", "status", "detail")
    for row in rows:
        colour = "green" if row["ready"] else "yellow"
        table.add_row(row["id"], row["name"], row["kind"], f"[{colour}]{row['status']}[/]", row["detail"])
    out.print(table)


@app.command()
def ask(
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads it from stdin.")],
    model: Annotated[list[str], typer.Option("--model", "-m", help="Endpoint id (repeat for several).")] = None,
    system: Annotated[Optional[str], typer.Option(help="System prompt.")] = None,
    conversation: Annotated[Optional[int], typer.Option(help="Continue this conversation id.")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Most output tokens per answer.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Ask one prompt of several models at once, stream the answers and store them."""
    from lib.chat import Column, PromptError, validate_prompt
    from lib.chat import ask as do_ask
    from lib.endpoints import UnknownEndpoint, key_is_set, resolve

    if prompt == "-":
        prompt = sys.stdin.read()
    try:
        validate_prompt(prompt)
    except PromptError as exc:
        fail(str(exc))
    if not model:
        fail("name at least one --model (see `python cli.py models`)")
    try:
        endpoints = resolve(_endpoints(), list(dict.fromkeys(model)))
    except UnknownEndpoint as exc:
        fail(str(exc))
    for endpoint in endpoints:
        if not key_is_set(endpoint):
            fail(f"model '{endpoint.id}' needs an API key: set the environment variable {endpoint.key_env}")
    _open_db()
    columns = [Column(e.id, e) for e in endpoints]
    overrides = {"temperature": temperature, "max_tokens": max_tokens}
    live_texts = {c.slot: "" for c in columns}

    def render() -> Table:
        table = Table(*[c.endpoint.name for c in columns], expand=True, show_lines=False)
        table.add_row(*[live_texts[c.slot] or "…" for c in columns])
        return table

    try:
        if as_json:
            result = do_ask(prompt, columns, system=system, conversation_id=conversation, overrides=overrides)
        else:
            with Live(render(), console=out, refresh_per_second=8, transient=False) as live:

                def update(target, state):
                    live_texts[target.key] = (
                        state.text
                        if state.status == "ok"
                        else (f"{state.text}\n[{state.status}] {state.error_message}")
                    )
                    live.update(render())

                result = do_ask(
                    prompt,
                    columns,
                    system=system,
                    conversation_id=conversation,
                    overrides=overrides,
                    on_update=update,
                )
    except PromptError as exc:
        fail(str(exc))
    answers = {}
    for col in columns:
        o = result.outcomes[col.slot]
        answers[col.slot] = {
            "text": o.text,
            "reasoning": o.reasoning or None,
            "status": o.status,
            "error_kind": o.error_kind,
            "error": o.error_message,
            "finish_reason": o.finish_reason,
            "ttft_ms": o.ttft_ms,
            "latency_ms": o.latency_ms,
            "input_tokens": o.input_tokens,
            "output_tokens": o.output_tokens,
            "cost_usd": o.cost_usd,
            "response_id": result.response_ids.get(col.slot),
        }
    if as_json:
        print(
            json.dumps(
                {
                    "conversation_id": result.conversation_id,
                    "exchange_id": result.exchange_id,
                    "models": answers,
                },
                ensure_ascii=False,
            )
        )
        return
    for slot, a in answers.items():
        ttft = f"{a['ttft_ms']:.0f} ms" if a["ttft_ms"] is not None else "–"
        err.print(
            f"[dim]{slot}: {a['status']}, first token {ttft}, total {a['latency_ms']:.0f} ms, "
            f"{a['output_tokens'] or 0} tokens[/]"
        )
    err.print(f"[dim]conversation {result.conversation_id} (continue with --conversation {result.conversation_id})[/]")


def _vote_filter(
    blind_only: bool, language: Optional[str], since: Optional[str], until: Optional[str], include_leaked: bool
):
    from datetime import datetime, timedelta

    from db.repo import VoteFilter

    def day(text: Optional[str], name: str):
        if not text:
            return None
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            fail(f"--{name} must be a date like 2026-11-28, not {text!r}")

    if language not in (None, "en", "zh"):
        fail("--language must be en or zh")
    end = day(until, "until")
    return VoteFilter(
        blind_only=blind_only,
        language=language,
        since=day(since, "since"),
        until=end + timedelta(days=1) if end else None,
        include_leaked=include_leaked,
    )


@app.command()
def leaderboard(
    battles: Annotated[Optional[Path], typer.Option(help="Rank a CSV (model_a,model_b,winner) instead.")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap rounds for the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    blind_only: Annotated[bool, typer.Option("--blind-only", help="Only blind votes.")] = False,
    include_leaked: Annotated[bool, typer.Option("--include-leaked", help="Keep identity-leaked battles.")] = False,
    language: Annotated[Optional[str], typer.Option(help="en or zh.")] = None,
    since: Annotated[Optional[str], typer.Option(help="First day (YYYY-MM-DD).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Last day (YYYY-MM-DD).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, best first.")] = False,
) -> None:
    """Bradley–Terry ratings with bootstrap intervals, from stored votes or a battles CSV."""
    from lib.leaderboard import battles_from_db, build_board
    from lib.rating import RatingError, read_battles_csv

    if bootstrap < 0:
        fail("--bootstrap must be 0 or more")
    try:
        if battles is not None:
            if not battles.exists():
                fail(f"{battles}: no such file")
            board_battles, names = read_battles_csv(battles.read_text(encoding="utf-8")), {}
        else:
            _open_db()
            board_battles, names = battles_from_db(_vote_filter(blind_only, language, since, until, include_leaked))
        board = build_board(board_battles, names, bootstrap=bootstrap, seed=seed)
    except RatingError as exc:
        fail(f"{battles}: {exc}" if battles is not None else str(exc))
    if as_json:
        print(json.dumps(board.as_json(), indent=2))
        return
    table = Table("#", "model", "rating", "95% CI", "battles", "W", "T", "L")
    for i, r in enumerate(board.ratings, 1):
        ci = "–" if r.ci_low is None else f"{r.ci_low:.0f} – {r.ci_high:.0f}"
        table.add_row(
            str(i),
            names.get(r.model, r.model),
            f"{r.rating:.0f}",
            ci,
            str(r.battles),
            str(r.wins),
            str(r.ties),
            str(r.losses),
        )
    out.print(table)


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", "-f", help="trl | openai-dpo | kto | jsonl | csv")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    blind_only: Annotated[bool, typer.Option("--blind-only", help="Only blind votes.")] = False,
    include_leaked: Annotated[bool, typer.Option("--include-leaked", help="Keep identity-leaked battles.")] = False,
    language: Annotated[Optional[str], typer.Option(help="en or zh.")] = None,
    since: Annotated[Optional[str], typer.Option(help="First day (YYYY-MM-DD).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Last day (YYYY-MM-DD).")] = None,
    card: Annotated[Optional[Path], typer.Option(help="Also write a Markdown dataset card here.")] = None,
) -> None:
    """Export rated pairs as training data, streamed to the file."""
    from db.engine import session_scope
    from lib.export import FORMATS, NothingToExport, dataset_card, write_export

    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    vote_filter = _vote_filter(blind_only, language, since, until, include_leaked)
    if not output.parent.exists():
        fail(f"{output.parent}: no such folder")
    _open_db()
    try:
        with session_scope() as s:
            summary = write_export(s, fmt, vote_filter, output)
    except NothingToExport as exc:
        fail(str(exc))
    if card:
        card.write_text(dataset_card(fmt, summary["rows"], vote_filter, summary["models"]), encoding="utf-8")
    err.print(f"wrote {summary['rows']} {fmt} rows to {output}")


@app.command()
def classify(
    input_file: Annotated[Optional[Path], typer.Argument(help="JSONL rows with prompt and response.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write labelled rows.")] = None,
    db: Annotated[bool, typer.Option("--db", help="Label every stored response the current detector has not.")] = False,
    batch: Annotated[int, typer.Option(help="Rows per batch.")] = 512,
    judge: Annotated[
        Optional[str], typer.Option(help="Use this endpoint as an LLM judge instead (costs calls).")
    ] = None,
) -> None:
    """Label answers answered / refused / deflected / blocked / empty (JSONL in and out, or the database)."""
    from lib.deflection import classify as detector
    from lib.deflection import source_name

    run_classifier, source_name_fn = detector, source_name
    if judge:
        from lib.deflection.judge import judge as run_judge
        from lib.endpoints import UnknownEndpoint, key_is_set, resolve

        try:
            (judge_endpoint,) = resolve(_endpoints(), [judge])
        except UnknownEndpoint as exc:
            fail(str(exc))
        if not key_is_set(judge_endpoint):
            fail(f"the judge '{judge}' needs an API key: set {judge_endpoint.key_env}")

        def run_classifier(items):  # noqa: F811 - the judge replaces the detector
            return run_judge(judge_endpoint, items)

        def source_name_fn():  # noqa: F811
            return f"judge:{judge}"

    if db:
        from db import repo
        from db.engine import session_scope

        _open_db()
        source, done = source_name_fn(), 0
        while True:
            with session_scope() as s:
                rows = repo.responses_without_label(s, source, limit=batch)
                if not rows:
                    break
                verdicts = run_classifier(
                    [{"prompt": r.exchange.prompt, "response": r.text, "status": r.status} for r in rows]
                )
                for row, verdict in zip(rows, verdicts, strict=True):
                    repo.set_label(s, row.id, verdict.label, source, verdict.confidence, verdict.rule)
                done += len(rows)
        err.print(f"labelled {done} responses with {source}")
        return
    if input_file is None or output is None:
        fail("give INPUT.jsonl and -o OUTPUT.jsonl, or --db")
    if not input_file.exists():
        fail(f"{input_file}: no such file")
    rows, problems = [], []
    with open(input_file, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: not JSON ({exc.msg})")
                continue
            if not isinstance(row, dict) or not isinstance(row.get("response"), str):
                problems.append(f"line {number}: no 'response' text")
                continue
            rows.append(row)
    if problems:
        fail(
            f"{input_file}: "
            + "; ".join(problems[:20])
            + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        )
    tmp = output.with_name(output.name + ".part")
    try:
        with open(tmp, "w", encoding="utf-8") as out_file:
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                for row, verdict in zip(chunk, run_classifier(chunk), strict=True):
                    labelled = {**row, "label": verdict.label, "confidence": verdict.confidence, "rule": verdict.rule}
                    out_file.write(json.dumps(labelled, ensure_ascii=False) + "\n")
        tmp.replace(output)
    finally:
        tmp.unlink(missing_ok=True)
    err.print(f"labelled {len(rows)} rows into {output}")


@app.command("train-deflection")
def train_deflection(
    output: Annotated[Optional[Path], typer.Option(help="Artifact to write (default: the shipped one).")] = None,
    no_db: Annotated[bool, typer.Option("--no-db", help="Leave out human labels from the database.")] = False,
) -> None:
    """Refit the deflection classifier from ../shared/data plus human labels (fixed seed)."""
    from lib.deflection.model import ARTIFACT
    from lib.deflection.train import TrainingDataMissing, train_and_save

    if not no_db:
        _open_db()
    try:
        meta = train_and_save(output or ARTIFACT, include_db=not no_db)
    except TrainingDataMissing as exc:
        fail(str(exc))
    err.print(f"trained {meta['version']} on {meta['rows']} rows -> {output or ARTIFACT}")


@app.command()
def analyze(
    suite_run: Annotated[Optional[int], typer.Option("--suite-run", help="Only this suite run.")] = None,
    models: Annotated[Optional[list[str]], typer.Option("--models", "-m", help="Endpoint ids (repeat).")] = None,
    language: Annotated[Optional[str], typer.Option(help="en or zh.")] = None,
    since: Annotated[Optional[str], typer.Option(help="First day (YYYY-MM-DD).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Last day (YYYY-MM-DD).")] = None,
    method: Annotated[str, typer.Option(help="pca or tsne.")] = "pca",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    html: Annotated[Optional[Path], typer.Option(help="Write the charts as standalone HTML files here.")] = None,
) -> None:
    """Clusters, canned templates, divergence and deflection rates for a scope of stored answers."""
    from rich.progress import Progress

    from db.repo import AnswerScope
    from lib.analysis import analyze as run_analysis

    if method not in ("pca", "tsne"):
        fail("--method must be pca or tsne")
    vote_filter = _vote_filter(False, language, since, until, False)  # validates the dates and language
    _open_db()
    scope = AnswerScope(
        suite_run_id=suite_run,
        models=models or None,
        language=language,
        since=vote_filter.since,
        until=vote_filter.until,
    )
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("embedding answers", total=None)
        result = run_analysis(
            scope, method, progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    result["scope"] = {
        "suite_run": suite_run,
        "models": models or None,
        "language": language,
        "since": since,
        "until": until,
        "method": method,
    }
    if html is not None:
        from lib.charts import analysis_figures

        html.mkdir(parents=True, exist_ok=True)
        written = []
        for name, figure in analysis_figures(result).items():
            figure.write_html(html / f"{name}.html", include_plotlyjs="cdn")
            written.append(str(html / f"{name}.html"))
        result["html"] = written
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str))
        return
    out.print(f"{result['n']} answers, models: {', '.join(result['models']) or '-'}")
    for view in ("clusters", "templates", "divergence", "deflection"):
        data = result[view]
        if "error" in data:
            out.print(f"[yellow]{view}[/]: {data['error']}")
        elif view == "clusters":
            for c in data["clusters"][:10]:
                out.print(f"cluster {c['id']} ({c['size']}): {', '.join(c['terms'])}")
        elif view == "templates":
            out.print(f"templates: {len(data['templates'])}")
        elif view == "divergence":
            for p in data["prompts"][:5]:
                out.print(f"divergence {p['mean_distance']:.3f} (outlier {p['outlier']}): {p['prompt'][:70]}")
        else:
            for r in data["rates"]:
                if r["topic"] == "(all)":
                    na = r["not_answered"]
                    out.print(
                        f"{r['model']}: not answered {na['rate']:.0%} [{na['low']:.0%}-{na['high']:.0%}] of {r['n']}"
                    )
    for path in result.get("html", []):
        err.print(f"wrote {path}")


suite_app = typer.Typer(help="Probe suites: list, show, import, run, status, results.", no_args_is_help=True)
app.add_typer(suite_app, name="suite")


def _suite_session():
    from db.engine import session_scope
    from lib.suites import ensure_builtin

    _open_db()
    with session_scope() as s:
        ensure_builtin(s)
    return session_scope


@suite_app.command("list")
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


@suite_app.command("show")
def suite_show(name: str, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """A suite with its prompts (id, text, language, topic, twin and control keys)."""
    from lib.suites import find_suite, prompt_dict

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


@suite_app.command("import")
def suite_import(file: Path) -> None:
    """Validate a suite file (YAML or JSONL) completely, then store it."""
    from lib.suites import SuiteError, import_suite, load_file

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

    from lib.suite_runner import execute

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


@suite_app.command("run")
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
    from lib.endpoints import key_is_set
    from lib.suite_runner import RunError, RunSpec, counts, create_or_resume

    endpoints = _endpoints()
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


@suite_app.command("resume")
def suite_resume(run: int) -> None:
    """Continue an existing run (what the suites page starts in the background)."""
    from db.models import SuiteRun

    endpoints = _endpoints()
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


@suite_app.command("cancel")
def suite_cancel(run: int) -> None:
    """Ask a running run to stop (it can be resumed later)."""
    from lib.suite_runner import request_cancel

    _open_db()
    request_cancel(run)
    err.print(f"asked run {run} to stop")


@suite_app.command("status")
def suite_status(run: int, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Progress of a run: answers done and failed per model."""
    from db.models import SuiteRun
    from lib.suite_runner import counts

    _open_db()
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


@suite_app.command("results")
def suite_results(
    run: int,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    compare: Annotated[Optional[int], typer.Option(help="Compare with this other run.")] = None,
) -> None:
    """Label rates per model × topic (Wilson 95%), English/Chinese gap, probe-vs-control asymmetry."""
    from db.models import SuiteRun
    from lib.suite_results import compare_runs, results

    _open_db()
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


@app.command("serve-local")
def serve_local(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
) -> None:
    """Run the embedded model's OpenAI-compatible server in the foreground."""
    import subprocess

    from lib import local_server

    try:
        command = local_server.server_command(port)
    except local_server.LocalModelUnavailable as exc:
        fail(str(exc))
    err.print(
        f"serving {local_server.MODEL_ALIAS} at http://127.0.0.1:{port}/v1 "
        f"(set PARALLAX_LOCAL_URL to share it); Ctrl-C stops it"
    )
    try:
        raise typer.Exit(subprocess.call(command))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def main() -> None:
    """Entry point."""
    app()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
