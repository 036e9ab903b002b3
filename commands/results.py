"""Results from the terminal: leaderboard, training-data export, deflection labels, analysis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from commands.common import day_or_fail, err, fail, load_endpoints_or_fail, open_db_or_fail, out, vote_filter_or_fail

app = typer.Typer()


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
    from lib.arena.leaderboard import build_board
    from lib.arena.leaderboard import leaderboard as stored_leaderboard
    from lib.arena.rating import RatingError, read_battles_csv

    if bootstrap < 0:
        fail("--bootstrap must be 0 or more")
    try:
        if battles is not None:
            if not battles.exists():
                fail(f"{battles}: no such file")
            board = build_board(read_battles_csv(battles.read_text(encoding="utf-8")), bootstrap=bootstrap, seed=seed)
        else:
            chosen = vote_filter_or_fail(blind_only, language, since, until, include_leaked)
            open_db_or_fail()
            board = stored_leaderboard(chosen, bootstrap=bootstrap, seed=seed)
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
            board.names.get(r.model, r.model),
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
    from lib.arena.export import FORMATS, NothingToExport
    from lib.arena.export import export as run_export

    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    vote_filter = vote_filter_or_fail(blind_only, language, since, until, include_leaked)
    if not output.parent.exists():
        fail(f"{output.parent}: no such folder")
    open_db_or_fail()
    try:
        summary = run_export(fmt, vote_filter, output, card=card)
    except NothingToExport as exc:
        fail(str(exc))
    err.print(f"wrote {summary.rows} {fmt} rows to {output}")


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
        from lib.providers.endpoints import UnknownEndpoint, key_is_set, resolve

        try:
            (judge_endpoint,) = resolve(load_endpoints_or_fail(), [judge])
        except UnknownEndpoint as exc:
            fail(str(exc))
        if not key_is_set(judge_endpoint):
            fail(f"the judge '{judge}' needs an API key: set {judge_endpoint.key_env}")

        def run_classifier(items):  # noqa: F811 - the judge replaces the detector
            return run_judge(judge_endpoint, items)

        def source_name_fn():  # noqa: F811
            return f"judge:{judge}"

    if db:
        from lib.deflection.labelling import label_backlog

        open_db_or_fail()
        source = source_name_fn()
        done = label_backlog(source, run_classifier, batch=batch)
        err.print(f"labelled {done} responses with {source}")
        return
    if input_file is None or output is None:
        fail("give INPUT.jsonl and -o OUTPUT.jsonl, or --db")
    if not input_file.exists():
        fail(f"{input_file}: no such file")
    from lib.files import iter_jsonl

    rows, problems = [], []
    for number, row, problem in iter_jsonl(input_file.read_text(encoding="utf-8")):
        if problem:
            problems.append(f"line {number}: {problem}")
        elif not isinstance(row, dict) or not isinstance(row.get("response"), str):
            problems.append(f"line {number}: no 'response' text")
        else:
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
        open_db_or_fail()
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

    from lib.analysis.views import analyze as run_analysis
    from lib.filters import answer_scope

    if method not in ("pca", "tsne"):
        fail("--method must be pca or tsne")
    vote_filter_or_fail(False, language, since, until, False)  # validates the dates and language
    open_db_or_fail()
    scope = answer_scope(
        suite_run_id=suite_run,
        endpoint_ids=models,
        language=language,
        first=day_or_fail(since, "since"),
        last=day_or_fail(until, "until"),
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
        from lib.analysis.charts import analysis_figures

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
    if result.get("embedder"):
        out.print(f"embedder: {result['embedder']} ({result.get('embedder_note') or '-'})", markup=False)
    if result.get("embedder_fallback"):
        err.print(f"warning: {result['embedder_fallback']}", markup=False)
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
