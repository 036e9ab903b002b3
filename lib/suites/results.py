"""Results of suite runs: label rates with Wilson intervals, the English/Chinese gap,
probe-vs-control asymmetry, and a comparison of two runs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from db import answers, suites
from db.answers import AnswerScope
from db.engine import session_scope
from db.vocab import Label, Status
from lib.analysis.stats import rate
from lib.analysis.views import deflection_view

NOT_ANSWERED = Label.NOT_ANSWERED


class UnknownRun(LookupError):
    """No suite run has this id."""


def run_rows(run_id: int) -> list[dict]:
    """Every answer of one run with its label (failed calls without text left out)."""
    with session_scope() as s:
        if suites.get_run(s, run_id) is None:
            raise UnknownRun(f"there is no run {run_id}")
        rows = answers.scope_answers(s, AnswerScope(suite_run_id=run_id))
    return [r for r in rows if r["status"] != Status.ERROR]


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


@dataclass
class RunResults:
    """Everything the results view and `suite results --json` show for one run.

    `rates`, `language_gap`, `asymmetry` hold JSON-ready rows (see analysis.views.deflection_view
    and `asymmetry`); each rate is {k, n, rate, low, high} with a Wilson 95% interval."""

    run: int
    n: int
    rates: list[dict] = field(default_factory=list)
    language_gap: list[dict] = field(default_factory=list)
    provider_blocks: dict = field(default_factory=dict)
    asymmetry: list[dict] = field(default_factory=list)
    note: str | None = None
    error: str | None = None
    comparison: dict | None = None


def results(run_id: int, compare_with: int | None = None) -> RunResults:
    """The results action for one run (and its comparison with another); UnknownRun if absent."""
    rows = run_rows(run_id)
    comparison = compare_runs(run_id, compare_with) if compare_with else None
    if not rows:
        return RunResults(run_id, 0, error="this run has no answers yet", comparison=comparison)
    view = deflection_view(rows)
    return RunResults(
        run=run_id,
        n=len(rows),
        rates=view.get("rates", []),
        language_gap=view.get("language_gap", []),
        provider_blocks=view.get("provider_blocks", {}),
        asymmetry=asymmetry(rows),
        note=view.get("error"),
        comparison=comparison,
    )


def _pct(r: dict | None) -> str:
    return "–" if not r or r.get("rate") is None else f"{r['rate']:.0%}"


def rates_table(res: RunResults) -> list[dict[str, str]]:
    """The rates as display rows (model, topic, n, not answered with interval, each label)."""
    return [
        {
            "model": r["model"],
            "topic": r["topic"],
            "n": str(r["n"]),
            "not answered [95% CI]": f"{_pct(r['not_answered'])} [{r['not_answered']['low']:.0%}–"
            f"{r['not_answered']['high']:.0%}]",
            "refused": _pct(r["refused"]),
            "deflected": _pct(r["deflected"]),
            "blocked": _pct(r["blocked"]),
        }
        for r in res.rates
    ]


def asymmetry_table(res: RunResults) -> list[dict[str, str]]:
    """Probe-vs-control rows for display."""
    return [
        {
            "model": a["model"],
            "topic": a["topic"],
            "probes": f"{_pct(a['probe'])} (n={a['probe']['n']})" if a["probe"]["n"] else "–",
            "controls": f"{_pct(a['control'])} (n={a['control']['n']})" if a["control"]["n"] else "–",
            "asymmetry": "–" if a["asymmetry"] is None else f"{a['asymmetry']:+.0%}",
        }
        for a in res.asymmetry
    ]


def gap_table(res: RunResults) -> list[dict[str, str]]:
    """English-vs-Chinese rows for display."""
    return [
        {"model": g["model"], "en": _pct(g["en"]), "zh": _pct(g["zh"]), "gap": f"{g['gap']:+.0%}"}
        for g in res.language_gap
    ]


def comparison_table(res: RunResults) -> list[dict[str, str]]:
    """Two runs side by side, for display (empty without a comparison)."""
    if not res.comparison:
        return []
    a_id, b_id = res.comparison["run_a"], res.comparison["run_b"]
    return [
        {
            "model": c["model"],
            "topic": c["topic"],
            f"#{a_id}": "–" if not c["a"] else f"{_pct(c['a'])} (n={c['a']['n']})",
            f"#{b_id}": "–" if not c["b"] else f"{_pct(c['b'])} (n={c['b']['n']})",
            "change": "–" if c["change"] is None else f"{c['change']:+.0%}",
        }
        for c in res.comparison["rows"]
    ]


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
