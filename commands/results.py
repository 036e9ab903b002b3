"""Results from the terminal: leaderboard, training-data export, deflection labels, analysis."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from commands.common import (
    COUNT_RANGE,
    ID_RANGE,
    day_or_fail,
    err,
    fail,
    fail_problems,
    heading,
    load_endpoints_or_fail,
    open_db_or_fail,
    out,
    output_folder_or_fail,
    output_or_fail,
    outputs_or_fail,
    plain,
    vote_filter_or_fail,
)
from lib.present import plural
from lib.safety import json_text

app = typer.Typer()
# the files `analyze --html` may write (lib.analysis.charts.analysis_figures), checked before analysing
HTML_CHARTS = ("map", "clusters", "divergence", "deflection", "language_gap")
PLOTLY_JS = "plotly.min.js"  # the charts' script, written beside them: they open with no network (no CDN)


@app.command()
def leaderboard(
    battles: Annotated[Optional[Path], typer.Option(help="Rank a CSV (model_a,model_b,winner) instead.")] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap rounds for the 95% intervals (at most 10,000).", min=0, max=10_000)
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.", min=0, max=2**32 - 1)] = 0,
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
    from lib.arena.rating import RatingError, read_battles_file
    from lib.files import InputFileError

    if bootstrap < 0:
        fail("--bootstrap must be 0 or more")
    try:
        if battles is not None:
            try:
                rows = read_battles_file(battles)
            except InputFileError as exc:
                fail(str(exc))
            _warn_lookalikes(battles.name, rows)
            board = build_board(rows, bootstrap=bootstrap, seed=seed)
        else:
            chosen = vote_filter_or_fail(blind_only, language, since, until, include_leaked)
            open_db_or_fail()
            board = stored_leaderboard(chosen, bootstrap=bootstrap, seed=seed)
    except RatingError as exc:
        if exc.problems:
            fail_problems(battles, exc.problems, "nothing was ranked")
        fail(f"{battles}: {exc}" if battles is not None else str(exc))
    if as_json:
        print(json_text(board.as_json(), indent=2))
        return
    table = Table("#", "model", "rating", "95% CI", "battles", "W", "T", "L")
    for i, r in enumerate(board.ratings, 1):
        ci = (
            "– (too few battles)"
            if r.ci_low is None and bootstrap
            else ("–" if r.ci_low is None else f"{r.ci_low:.0f} – {r.ci_high:.0f}")
        )
        table.add_row(
            str(i),
            plain(board.names.get(r.model, r.model)),
            f"{r.rating:.0f}",
            ci,
            str(r.battles),
            str(r.wins),
            str(r.ties),
            str(r.losses),
        )
    out.print(table)
    if battles is None:
        counted = "blind votes only" if blind_only else "blind and named votes (--blind-only: blind ones only)"
        err.print(f"{board.battles} battle{'s' if board.battles != 1 else ''} counted: {counted}", highlight=False)
    sparse = [board.names.get(r.model, r.model) for r in board.ratings if r.battles < 5]
    if sparse:
        err.print(f"few battles (under 5) for: {', '.join(sparse)}; their ratings are rough", highlight=False)


def _warn_lookalikes(name: str, battles: list) -> None:
    """A warning for each model name in a battles file with letters of another script that read as
    Latin ones ('gpt-4о' with a Cyrillic о), as an import warns (the first 20)."""
    from lib.lookalikes import lookalike_warnings

    first: dict[str, str] = {}
    for battle in battles:
        first.setdefault(battle.model_a, f"{name}:{battle.line}")
        first.setdefault(battle.model_b, f"{name}:{battle.line}")
    for warning in lookalike_warnings(first, name, kept="ranked as written"):
        err.print(f"warning: {warning}", highlight=False)


@app.command()
def export(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help="trl | openai-dpo | kto | jsonl | csv")],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            metavar="<path>",
            help="File to write, a folder (ending in /) to write parallax-FORMAT.* into, or - for standard output.",
        ),
    ],
    blind_only: Annotated[bool, typer.Option("--blind-only", help="Only blind votes.")] = False,
    include_leaked: Annotated[bool, typer.Option("--include-leaked", help="Keep identity-leaked battles.")] = False,
    language: Annotated[Optional[str], typer.Option(help="en or zh.")] = None,
    since: Annotated[Optional[str], typer.Option(help="First day (YYYY-MM-DD).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Last day (YYYY-MM-DD).")] = None,
    card: Annotated[
        Optional[str],
        typer.Option(
            metavar="<path>",
            help="Also write a Markdown dataset card here (a file, a folder ending in /, or - for standard output).",
        ),
    ] = None,
) -> None:
    """Export rated pairs as training data, streamed to the file."""
    from lib.arena.export import FORMATS, NothingToExport, file_names
    from lib.arena.export import export as run_export
    from lib.files import OutputPathError

    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    vote_filter = vote_filter_or_fail(blind_only, language, since, until, include_leaked)
    data_name, card_name = file_names(fmt)
    data_path = output_or_fail(ctx, output, data_name)
    card_path = output_or_fail(ctx, card, card_name) if card is not None else None
    outputs_or_fail([data_path] + ([card_path] if card_path is not None else []))  # never the database
    open_db_or_fail()
    try:
        summary = run_export(fmt, vote_filter, data_path, card=card_path)
    except (NothingToExport, OutputPathError) as exc:
        fail(str(exc))
    err.print(
        f"wrote {plural(summary.rows, f'{fmt} row')} to {data_path}"
        + (f" and a dataset card to {card_path}" if card_path else ""),
        highlight=False,
    )


@app.command()
def classify(
    ctx: typer.Context,
    input_file: Annotated[
        Optional[Path],
        typer.Argument(
            help="Answer rows as `import` reads them: JSONL, JSON or CSV (.gz too), with a response (or answer, "
            "output, completion) and optionally a prompt (or question, input) and status (- reads JSONL from "
            "standard input)."
        ),
    ] = None,
    output: Annotated[
        Optional[str],
        typer.Option(
            "--output",
            "-o",
            metavar="<path>",
            help="Where to write labelled rows: a file, a folder (ending in /) to write INPUT.labelled.jsonl into, "
            "or - for standard output.",
        ),
    ] = None,
    db: Annotated[bool, typer.Option("--db", help="Label every stored response the current detector has not.")] = False,
    batch: Annotated[int, typer.Option(help="Rows per batch.")] = 512,
    judge: Annotated[
        Optional[str], typer.Option(help="Use this endpoint as an LLM judge instead (costs calls).")
    ] = None,
    judge_max_tokens: Annotated[
        Optional[int],
        typer.Option(
            help="The judge's output budget (default: 16384 for reasoning endpoints, 256 for the embedded model, "
            "else 4096).",
            **COUNT_RANGE,
        ),
    ] = None,
) -> None:
    """Label answers answered / refused / deflected / blocked / empty (rows as `import` reads them in, JSONL
    out; or the database)."""
    from lib.deflection import classify as detector
    from lib.deflection import source_name

    run_classifier, source_name_fn = detector, source_name
    unread: Counter = Counter()  # the judge's verdicts that could not be read, by why
    if judge:
        from lib.deflection.judge import judge as run_judge
        from lib.providers.endpoints import UnknownEndpoint, key_is_set, resolve, where_keys_go

        try:
            (judge_endpoint,) = resolve(load_endpoints_or_fail(), [judge])
        except UnknownEndpoint as exc:
            fail(str(exc))
        if not key_is_set(judge_endpoint):
            fail(f"the judge '{judge}' needs an API key: {where_keys_go(judge_endpoint.key_env)}")

        if judge_max_tokens is not None and judge_max_tokens < 1:
            fail("--judge-max-tokens must be at least 1")

        def run_classifier(items):  # noqa: F811 - the judge replaces the detector
            verdicts = run_judge(judge_endpoint, items, max_tokens=judge_max_tokens)
            unread.update(
                v.rule.split(":", 2)[2] for v in verdicts if not v.error and v.rule.startswith(f"judge:{judge}:")
            )
            return verdicts

        def source_name_fn():  # noqa: F811
            return f"judge:{judge}"

    if db:
        from lib.deflection.labelling import label_backlog

        open_db_or_fail()
        source = source_name_fn()
        done = label_backlog(source, run_classifier, batch=batch)
        err.print(f"labelled {plural(done.labelled, 'response')} with {source}", highlight=False)
        _report_unread(unread)
        _report_failed(done.failed, list(done.reasons), "those responses stay unlabelled")
        return
    if input_file is None or output is None:
        fail("give INPUT.jsonl and -o OUTPUT.jsonl, or --db")
    from lib.files import DASH, InputFileError, OutputPathError, read_input_bytes, read_stdin_bytes, staged_file
    from lib.imports import ImportProblems, rows_to_label

    from_stdin = str(input_file) == DASH
    output = output_or_fail(ctx, output, f"{'stdin' if from_stdin else input_file.stem}.labelled.jsonl")
    # never over the input (another spelling, a link, the file redirected to standard input) or the database
    outputs_or_fail([output], (0, "the file on standard input") if from_stdin else (input_file, "the input file"))
    where = "standard input" if from_stdin else str(input_file)
    try:  # the rows as `import` reads them: JSONL, a JSON list or CSV (.gz too), its field names
        data = read_stdin_bytes() if from_stdin else read_input_bytes(input_file)
        rows, warnings = rows_to_label(data, "<stdin>" if from_stdin else input_file.name)
    except InputFileError as exc:
        fail(str(exc))
    except ImportProblems as exc:
        fail_problems(where, exc.problems, "nothing was written")
    for warning in warnings:  # bytes that were not UTF-8: replaced by U+FFFD, and the labelling goes on
        err.print(Text.assemble(("warning:", "yellow"), plain(f" {warning}")))
    if batch < 1:
        fail("--batch must be at least 1")
    failed, reasons = 0, []
    try:
        with staged_file(output) as staged:
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                for (row, _), verdict in zip(chunk, run_classifier([item for _, item in chunk]), strict=True):
                    if verdict.error:  # a failed judge call is no verdict: the row stays unlabelled
                        failed += 1
                        reasons += [verdict.error] if verdict.error not in reasons else []
                        labelled = {**row, "label": None, "confidence": None, "rule": verdict.rule}
                        labelled["judge_error"] = verdict.error
                    else:
                        labelled = {**row, "label": verdict.label, "confidence": verdict.confidence}
                        labelled["rule"] = verdict.rule
                    staged.file.write(json_text(labelled) + "\n")
    except OutputPathError as exc:
        fail(str(exc))
    err.print(f"labelled {plural(len(rows) - failed, 'row')} into {output}", highlight=False)
    _report_unread(unread)
    _report_failed(failed, reasons, "those rows have label null and a judge_error")


def _report_failed(failed: int, reasons: list[str], where: str) -> None:
    """Say how many judge calls failed and why, then end with exit code 1 (a failed call is no verdict)."""
    if not failed:
        return
    shown = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} other reasons" if len(reasons) > 3 else "")
    err.print(plain(f"warning: {failed} judge call(s) failed ({shown}); {where}: run again to label them"))
    raise typer.Exit(1)


def _report_unread(unread: Counter) -> None:
    """Say how many judge verdicts could not be read, and why (stored as `empty` with confidence 0)."""
    if not unread:
        return
    reasons = ", ".join(f"{n} {why}" for why, n in unread.most_common())
    err.print(plain(f"warning: {sum(unread.values())} judge verdicts could not be read ({reasons})"))
    if any(why.endswith("length") for why in unread):
        err.print("the judge ran out of output tokens before its verdict: raise --judge-max-tokens")


@app.command("train-deflection")
def train_deflection(
    ctx: typer.Context,
    output: Annotated[
        Optional[str],
        typer.Option(
            metavar="<path>",
            help="Artifact to write (default: the shipped one): a .npz file, or a folder (ending in /) for model.npz.",
        ),
    ] = None,
    no_db: Annotated[bool, typer.Option("--no-db", help="Leave out human labels from the database.")] = False,
) -> None:
    """Refit the deflection classifier from ../shared/data plus human labels (deterministic)."""
    from lib.deflection.card import card_path
    from lib.deflection.model import ARTIFACT
    from lib.deflection.train import TrainingDataMissing, train_and_save
    from lib.files import DASH

    if output == DASH:
        fail("--output - (standard output) cannot take the artifact and its card: give a .npz file or a folder")
    artifact = ARTIFACT if output is None else output_or_fail(ctx, output, ARTIFACT.name)
    if artifact.suffix != ".npz":  # numpy adds .npz to any other name: check and name the file it writes
        artifact = artifact.with_name(artifact.name + ".npz")
    outputs_or_fail([artifact, card_path(artifact)])  # before minutes of training, not after
    if not no_db:
        open_db_or_fail()
    try:
        meta = train_and_save(artifact, include_db=not no_db)
    except TrainingDataMissing as exc:
        fail(str(exc))
    err.print(f"trained {meta['version']} on {meta['rows']} rows -> {artifact}", highlight=False)


@app.command()
def analyze(
    ctx: typer.Context,
    suite_run: Annotated[Optional[int], typer.Option("--suite-run", help="Only this suite run.", **ID_RANGE)] = None,
    models: Annotated[
        Optional[list[str]], typer.Option("--models", "-m", help="Endpoint ids or display names (repeat).")
    ] = None,
    language: Annotated[Optional[str], typer.Option(help="en or zh.")] = None,
    since: Annotated[Optional[str], typer.Option(help="First day (YYYY-MM-DD).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Last day (YYYY-MM-DD).")] = None,
    method: Annotated[str, typer.Option(help="pca or tsne.")] = "pca",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    html: Annotated[
        Optional[Path],
        typer.Option(
            help="Write the charts as HTML files, with the plotly.min.js they load (no network needed), into this "
            "folder (made if missing)."
        ),
    ] = None,
) -> None:
    """Clusters, canned templates, divergence and deflection rates for a scope of stored answers."""
    from rich.progress import Progress

    from lib.analysis.views import analyze as run_analysis
    from lib.files import DASH, OutputPathError, StagedGroup
    from lib.filters import answer_scope

    if method not in ("pca", "tsne"):
        fail("--method must be pca or tsne")
    vote_filter_or_fail(False, language, since, until, False)  # validates the dates and language
    if html is not None and str(html) == DASH:
        fail("--html - (standard output) cannot take several chart files: give a folder")
    if html is not None:  # before the analysis runs, not after
        output_folder_or_fail(ctx, html, [f"{name}.html" for name in HTML_CHARTS] + [PLOTLY_JS])
    open_db_or_fail()
    if models:
        models = _stored_models_or_fail(models)
    scope = answer_scope(
        suite_run_id=suite_run,
        endpoint_ids=models,
        language=language,
        first=day_or_fail(since, "since"),
        last=day_or_fail(until, "until"),
    )
    progress, task = Progress(console=err, transient=True), None

    def show(done: int, total: int) -> None:  # called only when some answers are not embedded yet
        nonlocal task
        if not err.is_terminal:  # no bar without a terminal: say it once
            if done == 0:
                err.print(f"embedding {plural(total, 'answer')} not embedded yet (minutes on a CPU for thousands)")
            return
        if task is None:
            progress.start()
            task = progress.add_task("embedding answers", total=total)
        progress.update(task, completed=done, total=total)

    try:
        result = run_analysis(scope, method, progress=show)
    finally:
        progress.stop()
    result["scope"] = {
        "suite_run": suite_run,
        "models": models or None,
        "language": language,
        "since": since,
        "until": until,
        "method": method,
    }
    if html is not None:
        from plotly.offline import get_plotlyjs

        from lib.analysis.charts import analysis_figures

        written = []
        try:
            with StagedGroup() as charts:  # every file renamed into place once all are complete
                charts.add(html / PLOTLY_JS).file.write(get_plotlyjs())
                for name, figure in analysis_figures(result).items():
                    # <script src="plotly.min.js">
                    figure.write_html(charts.add(html / f"{name}.html").file, include_plotlyjs="directory")
                    written.append(str(html / f"{name}.html"))
        except OutputPathError as exc:
            fail(str(exc))
        result["html"] = written
    if as_json:
        print(json_text(result, default=str))
        return
    heading("Scope (answers analysed, models, embedder)", first=True)
    out.print(plain(f"  {plural(result['n'], 'answer')}, models: {', '.join(result['models']) or '-'}"))
    if result.get("embedder"):
        out.print(plain(f"  embedder: {result['embedder']} ({result.get('embedder_note') or '-'})"))
    if result.get("embedder_fallback"):
        err.print(plain(f"warning: {result['embedder_fallback']}"))
    _print_clusters(result["clusters"])
    _print_templates(result["templates"])
    _print_divergence(result["divergence"])
    _print_deflection(result["deflection"])
    for path in result.get("html", []):
        err.print(f"wrote {path}")


def _stored_models_or_fail(models: list[str]) -> list[str]:
    """`--models` as endpoint ids: each given as an id or as a display name the output prints
    (every id with an answer stored under that name, a name it had before a rename too; an id
    and a name that are spelt alike select both), compared in the one spelling of names on both
    sides (an imported 'Ｑｗｅｎ２．５' is stored as 'Qwen2.5', an endpoint's own name as written);
    exit 2 naming those with no stored answers, and the models that have."""
    from lib.conversations import endpoint_name_pairs, endpoint_names
    from lib.safety import one_line_name

    pairs = endpoint_name_pairs()
    spelt: dict[str, set[str]] = {}  # one spelling -> ids, by id and by every stored name
    for endpoint_id, name in pairs:
        for written in (endpoint_id, name):
            spelt.setdefault(one_line_name(written or ""), set()).add(endpoint_id)
    ids: list[str] = []
    unknown = []
    for model in dict.fromkeys(map(one_line_name, models)):
        found = spelt.get(model)
        ids += sorted(found - set(ids)) if found else []
        if not found:
            unknown.append(model)
    if unknown:
        known = endpoint_names()
        shown = sorted(i if known[i] == i else f"{i} ({known[i]})" for i in known)
        more = f" and {len(shown) - 40:,} more" if len(shown) > 40 else ""
        listed = ", ".join(shown[:40]) + more if shown else "none"
        named = ", ".join(map(repr, unknown[:20])) + (f" and {len(unknown) - 20:,} more" if len(unknown) > 20 else "")
        fail(f"no stored answers from {named} (models with answers: {listed})")
    return ids


def _one_line(text: str, limit: int = 70) -> str:
    """The start of a prompt or an answer on one line (its line breaks would look like a new section)."""
    flat = " ".join(text.split())
    return flat[:limit] + ("…" if len(flat) > limit else "")


def _problem(data: dict) -> bool:
    """Print why a section has nothing to show (no answers in the scope, too few…); whether it had."""
    if "error" in data:
        out.print(Text.assemble("  ", plain(data["error"], "yellow")))
    return "error" in data


def _print_clusters(data: dict) -> None:
    """The largest clusters: id, size and the words that set each apart."""
    heading("Clusters (the 10 largest: size and distinctive words)")
    if _problem(data):
        return
    for c in data["clusters"][:10]:
        out.print(plain(f"  cluster {c['id']} ({c['size']}): {', '.join(c['terms'])}"), highlight=False)
    out.print(f"  {plural(data['noise'], 'answer fits', 'answers fit')} no cluster", highlight=False)


def _print_templates(data: dict) -> None:
    """Canned templates: near-identical answers given to many prompts, the most used first."""
    heading("Canned templates (near-identical answers given to many prompts)")
    if _problem(data):
        return
    if not data["templates"]:
        out.print(f"  none: no near-identical answer was given to {data['min_prompts']}+ prompts", highlight=False)
    for t in data["templates"][:5]:
        models = ", ".join(f"{m} ({n})" for m, n in t["by_model"].items())
        out.print(plain(f"  used {t['uses']}× for {t['prompts']} prompts by {models}: {_one_line(t['example'])}"))
    if len(data["templates"]) > 5:
        out.print(f"  and {len(data['templates']) - 5} more (--json lists them all)", highlight=False)


def _print_divergence(data: dict) -> None:
    """The prompts whose answers differ most between models, with the outlying model."""
    heading("Divergence (where the models differ most: mean distance, outlying model)")
    if _problem(data):
        return
    for p in data["prompts"][:5]:
        out.print(
            plain(f"  {p['mean_distance']:.3f} (outlier {p['outlier']}): {_one_line(p['prompt'])}"), highlight=False
        )


def _print_deflection(data: dict) -> None:
    """Per model: not answered raw and corrected; the gap; answers left out; agreement; the card."""
    from lib.analysis.deflection import card_line, points, signed, with_interval

    heading("Not answered per model (raw, Wilson 95%; corrected, bootstrap 95%)")
    if _problem(data):
        _print_left_out(data)
        return
    for r in data["rates"]:
        if r["topic"] == "(all)":
            line = (
                f"  {r['model']}: {with_interval(r['not_answered'])} raw, "
                f"{with_interval(r['corrected'])} corrected, of {r['n']}"
            )
            out.print(plain(line), highlight=False)
    heading("English vs Chinese (twin prompts)")
    if not data["language_gap"] and data.get("language_gap_note"):
        out.print(plain(f"  {data['language_gap_note']}"), highlight=False)
    for g in data["language_gap"]:
        line = (
            f"  {g['model']}: en {with_interval(g['en'])} vs zh {with_interval(g['zh'])} raw "
            f"(gap {points(g['gap'])} pts); "
            f"en {with_interval(g['en_corrected'])} vs zh {with_interval(g['zh_corrected'])} corrected "
            f"(gap {signed(g['gap_corrected'])})"
        )
        out.print(plain(line), highlight=False)
    _print_left_out(data)
    if data["agreement"]:
        heading("Agreement with other labels (Cohen's kappa against the detector)")
    for a in data["agreement"]:
        kappa = "–" if a["kappa"] is None else f"{a['kappa']:.2f}"
        out.print(plain(f"  {a['source']} ({a['language']}): kappa {kappa}, n={a['n']}"), highlight=False)
    heading("Detector card")
    out.print(plain(f"  {card_line(data)}"), highlight=False)
    for note in data["correction"]["notes"]:
        out.print(Text.assemble("  ", ("note", "yellow"), ": ", plain(note)))


def _print_left_out(data: dict) -> None:
    """Per model, the answers left out of rates and why (only models with any), under its heading."""
    lines = []
    for model, c in data.get("left_out", {}).items():
        reasons = ", ".join(f"{c[k]} {k}" for k in ("blocked", "incomplete", "empty", "unlabelled") if c[k])
        if reasons:
            lines.append(f"  {model}: {reasons} (of {c['answers']})")
    if lines:
        heading("Left out of rates (blocked, failed or interrupted, empty, unlabelled)")
    for line in lines:
        out.print(plain(line), highlight=False)
