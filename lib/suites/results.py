"""Results of suite runs: label rates with Wilson intervals, the English/Chinese gap,
probe-vs-control asymmetry, and a comparison of two runs."""

from __future__ import annotations

from collections import defaultdict

from db import repo
from db.engine import session_scope
from lib.analysis.views import NOT_ANSWERED, deflection_view
from lib.stats import rate


def run_rows(run_id: int) -> list[dict]:
    """Every answer of one run with its label (failed calls without text left out)."""
    with session_scope() as s:
        rows = repo.scope_answers(s, repo.AnswerScope(suite_run_id=run_id))
    return [r for r in rows if r["status"] != "error"]


def asymmetry(rows: list[dict]) -> list[dict]:
    """Per model (and topic): not-answered rate on probes minus the rate on their controls."""
    cells: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: {"probe": [0, 0], "control": [0, 0]})
    for r in rows:
        if r["kind"] in ("probe", "control") and r["label"]:
            for topic in (r["topic"], "(all)"):
                cell = cells[(r["model_name"], topic)][r["kind"]]
                cell[0] += r["label"] in NOT_ANSWERED
                cell[1] += 1
    out = []
    for (model, topic), cell in sorted(cells.items()):
        probe, control = rate(*cell["probe"]), rate(*cell["control"])
        diff = (probe["rate"] - control["rate"]) if probe["n"] and control["n"] else None
        out.append({"model": model, "topic": topic, "probe": probe, "control": control, "asymmetry": diff})
    return out


def results(run_id: int) -> dict:
    """Everything the results view and `suite results --json` show for one run."""
    rows = run_rows(run_id)
    if not rows:
        return {"run": run_id, "n": 0, "error": "this run has no answers yet"}
    view = deflection_view(rows)
    return {
        "run": run_id,
        "n": len(rows),
        "rates": view.get("rates", []),
        "language_gap": view.get("language_gap", []),
        "provider_blocks": view.get("provider_blocks", {}),
        "asymmetry": asymmetry(rows),
        "note": view.get("error"),
    }


def compare_runs(run_a: int, run_b: int) -> dict:
    """Not-answered rates per model × topic in two runs side by side, with the change."""
    tables = {}
    for key, run_id in (("a", run_a), ("b", run_b)):
        counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for r in run_rows(run_id):
            if r["label"]:
                for topic in (r["topic"], "(all)"):
                    counts[(r["model_name"], topic)][0] += r["label"] in NOT_ANSWERED
                    counts[(r["model_name"], topic)][1] += 1
        tables[key] = {cell: rate(*c) for cell, c in counts.items()}
    rows = []
    for cell in sorted(set(tables["a"]) | set(tables["b"])):
        a, b = tables["a"].get(cell), tables["b"].get(cell)
        change = b["rate"] - a["rate"] if a and b and a["n"] and b["n"] else None
        rows.append({"model": cell[0], "topic": cell[1], "a": a, "b": b, "change": change})
    return {"run_a": run_a, "run_b": run_b, "rows": rows}
