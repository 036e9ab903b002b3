"""Results of suite runs: not-answered rates raw (Wilson 95%) and corrected for the detector's
measured errors (bootstrap 95%), the English/Chinese gap, probe-vs-control asymmetry, the
answers left out of rates, and a comparison of two runs (see lib.analysis.deflection)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from db import answers, suites
from db.answers import AnswerScope
from db.engine import session_scope
from db.vocab import Label, Status
from lib.analysis import deflection
from lib.analysis import rates as R
from lib.analysis.deflection import IN_RATES, bucket, corrected_cell, signed, with_interval
from lib.analysis.stats import rate
from lib.analysis.views import deflection_view

NOT_ANSWERED = Label.NOT_ANSWERED


class UnknownRun(LookupError):
    """No suite run has this id."""


def run_rows(run_id: int) -> list[dict]:
    """Every answer of one run with its labels; a failed or interrupted attempt is left out when
    the same item (prompt, sample, model) was later answered or blocked (a retry replaced it)."""
    with session_scope() as s:
        if suites.get_run(s, run_id) is None:
            raise UnknownRun(f"there is no run {run_id}")
        rows = answers.scope_answers(s, AnswerScope(suite_run_id=run_id))
    return without_retried(rows)


def without_retried(rows: list[dict]) -> list[dict]:
    """Rows less the failed or interrupted attempts of items (exchange, model) that a later
    attempt settled (answered or blocked): those were retried, and are not left-out answers."""
    settled = {(r["exchange_id"], r["endpoint_id"]) for r in rows if r["status"] in Status.SETTLED}
    return [r for r in rows if r["status"] in Status.SETTLED or (r["exchange_id"], r["endpoint_id"]) not in settled]


def _corrector() -> R.Corrector:
    from lib.deflection import detector_card

    return R.Corrector.from_card(detector_card())


def asymmetry(rows: list[dict], corrector: R.Corrector | None = None) -> list[dict]:
    """Per model (and topic): not-answered rate on probes minus the rate on their controls, raw and
    corrected (only finished answers labelled answered/refused/deflected count)."""
    corrector = _corrector() if corrector is None else corrector
    cells: dict[tuple[str, str], dict[str, list[dict]]] = defaultdict(lambda: {"probe": [], "control": []})
    for r in rows:
        if r["kind"] in ("probe", "control") and bucket(r) == IN_RATES:
            for topic in (r["topic"], deflection.ALL_TOPICS):
                cells[(r["model_name"], topic)][r["kind"]].append(r)
    out = []
    for (model, topic), cell in sorted(cells.items()):
        entry: dict = {"model": model, "topic": topic}
        draws = {}
        for kind, members in cell.items():
            entry[kind] = rate(sum(r["label"] in NOT_ANSWERED for r in members), len(members))
            entry[f"{kind}_corrected"], draws[kind] = corrected_cell(members, corrector, "asym", model, topic, kind)
        both = entry["probe"]["n"] and entry["control"]["n"]
        entry["asymmetry"] = entry["probe"]["rate"] - entry["control"]["rate"] if both else None
        point = None
        if both and entry["probe_corrected"] and entry["control_corrected"]:
            point = entry["probe_corrected"]["rate"] - entry["control_corrected"]["rate"]
        entry["asymmetry_corrected"] = R.difference(draws["control"], draws["probe"], point)
        out.append(entry)
    return out


@dataclass
class RunResults:
    """Everything the results view and `suite results --json` show for one run.

    `rates`, `language_gap`, `left_out`, `agreement`, `correction`, `detector_card` are as in
    analysis.deflection.view; each raw rate is {k, n, rate, low, high} with a Wilson 95% interval
    and each `corrected` one {rate, low, high, n_corrected, n_human, n_uncorrected} with a
    bootstrap 95% interval; `asymmetry` rows are from `asymmetry`."""

    run: int
    n: int
    rates: list[dict] = field(default_factory=list)
    language_gap: list[dict] = field(default_factory=list)
    provider_blocks: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)
    agreement: list[dict] = field(default_factory=list)
    correction: dict | None = None
    detector_card: dict = field(default_factory=dict)
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
        left_out=view.get("left_out", {}),
        agreement=view.get("agreement", []),
        correction=view.get("correction"),
        detector_card=view.get("detector_card", {}),
        asymmetry=asymmetry(rows),
        note=view.get("error"),
        comparison=comparison,
    )


def _pct(r: dict | None) -> str:
    return "–" if not r or r.get("rate") is None else f"{r['rate']:.0%}"


def rates_table(res: RunResults) -> list[dict[str, str]]:
    """The rates as display rows: model, topic, n, not answered raw and corrected, each label."""
    return deflection.rate_table(res.rates)


def gap_table(res: RunResults) -> list[dict[str, str]]:
    """English-vs-Chinese rows for display, raw and corrected."""
    return deflection.gap_table(res.language_gap)


def left_out_table(res: RunResults) -> list[dict[str, str]]:
    """Per model: the answers left out of rates and why (provider blocks, incomplete, empty…)."""
    return deflection.left_out_table(res.left_out)


def agreement_table(res: RunResults) -> list[dict[str, str]]:
    """The detector against each other label source in this run, per language."""
    return deflection.agreement_table(res.agreement)


def _as_view(res: RunResults) -> dict:
    return {"detector_card": res.detector_card, "correction": res.correction}


def card_line(res: RunResults) -> str:
    """Which detector card and matrices corrected the rates."""
    return deflection.card_line(_as_view(res))


def card_table(res: RunResults) -> list[dict[str, str]]:
    """Per language: what the card measured and the matrix that corrects it."""
    return deflection.card_table(_as_view(res))


def matrices_used(res: RunResults) -> dict[str, dict]:
    """Per language, the card's matrix that corrects the rates: {measured_on, n, confusion}."""
    return deflection.used_matrices(_as_view(res))


confusion_table = deflection.confusion_table


def asymmetry_table(res: RunResults) -> list[dict[str, str]]:
    """Probe-vs-control rows for display, raw and corrected."""
    return [
        {
            "model": a["model"],
            "topic": a["topic"],
            "probes": f"{_pct(a['probe'])} (n={a['probe']['n']})" if a["probe"]["n"] else "–",
            "probes corrected": with_interval(a["probe_corrected"]),
            "controls": f"{_pct(a['control'])} (n={a['control']['n']})" if a["control"]["n"] else "–",
            "controls corrected": with_interval(a["control_corrected"]),
            "asymmetry": "–" if a["asymmetry"] is None else f"{a['asymmetry'] * 100:+.0f} pts",
            "asymmetry corrected": signed(a["asymmetry_corrected"]),
        }
        for a in res.asymmetry
    ]


def comparison_table(res: RunResults) -> list[dict[str, str]]:
    """Two runs side by side, raw and corrected, for display (empty without a comparison)."""
    if not res.comparison:
        return []
    a_id, b_id = res.comparison["run_a"], res.comparison["run_b"]
    return [
        {
            "model": c["model"],
            "topic": c["topic"],
            f"#{a_id}": "–" if not c["a"] else f"{_pct(c['a'])} (n={c['a']['n']})",
            f"#{a_id} corrected": with_interval(c["a_corrected"]),
            f"#{b_id}": "–" if not c["b"] else f"{_pct(c['b'])} (n={c['b']['n']})",
            f"#{b_id} corrected": with_interval(c["b_corrected"]),
            "change": "–" if c["change"] is None else f"{c['change'] * 100:+.0f} pts",
            "change corrected": signed(c["change_corrected"]),
        }
        for c in res.comparison["rows"]
    ]


def compare_runs(run_a: int, run_b: int) -> dict:
    """Not-answered rates per model × topic in two runs side by side, raw and corrected, with the change."""
    corrector = _corrector()
    tables, draws = {}, {}
    for key, run_id in (("a", run_a), ("b", run_b)):
        cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for r in run_rows(run_id):
            if bucket(r) == IN_RATES:
                for topic in (r["topic"], deflection.ALL_TOPICS):
                    cells[(r["model_name"], topic)].append(r)
        tables[key] = {}
        for cell, members in cells.items():
            # each run's rate as its own table shows it (the same draws: one interval everywhere)…
            corrected, _ = corrected_cell(members, corrector, "rate", *cell)
            # …and draws of its own for the change, independent of the other run's
            _, draws[(key, cell)] = corrected_cell(members, corrector, "run", run_id, *cell)
            tables[key][cell] = (rate(sum(r["label"] in NOT_ANSWERED for r in members), len(members)), corrected)
    rows = []
    for cell in sorted(set(tables["a"]) | set(tables["b"])):
        (a, a_fixed), (b, b_fixed) = tables["a"].get(cell, (None, None)), tables["b"].get(cell, (None, None))
        change = b["rate"] - a["rate"] if a and b else None
        point = b_fixed["rate"] - a_fixed["rate"] if a_fixed and b_fixed else None
        change_corrected = R.difference(draws.get(("a", cell), []), draws.get(("b", cell), []), point)
        rows.append(
            {
                "model": cell[0],
                "topic": cell[1],
                "a": a,
                "b": b,
                "change": change,
                "a_corrected": a_fixed,
                "b_corrected": b_fixed,
                "change_corrected": change_corrected,
            }
        )
    return {"run_a": run_a, "run_b": run_b, "rows": rows}
