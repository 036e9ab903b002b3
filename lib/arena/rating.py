"""Bradley–Terry ratings from pairwise votes, with bootstrap confidence intervals.

Votes are aggregated into a models × models matrix of (half-)wins first, so the fit costs the
same for 100 or 100,000 battles. Ties (and both-bad) count as half a win each way. The fit is
the maximum-likelihood estimate (L-BFGS on the log-likelihood with its gradient); when the
comparison graph is not strongly connected (a model that always wins, say) the MLE does not
exist, and a small ridge penalty keeps the ratings finite. Ratings are on the Elo-like scale
400·log10(odds), centred at 1000. The bootstrap resamples battles with replacement, drawn as
multinomial counts over the distinct (a, b, outcome) cells, which is the same distribution.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.sparse.csgraph import connected_components

from db.vocab import Winner
from lib.safety import one_line_name, one_line_problem

SCALE, BASE = 400.0, 1000.0
OUTCOMES = ("a", "b", "tie")
RIDGE_IF_DISCONNECTED = 1e-2
MAX_MODEL_CHARS = 100  # as an import's model names (lib.imports.records): one cell of a table
CSV_WINNERS = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "tie"}  # Chatbot Arena's words
CSV_WINNERS |= {"a": "a", "b": "b", "both_bad": "tie"}  # and `cli.py vote`'s (any case)


class RatingError(ValueError):
    """Votes that cannot be ranked (too few models, a malformed battles file...); `problems` lists
    a battles file's problems, each as FILE:LINE: problem (empty for other errors)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []


@dataclass
class Battle:
    """One pairwise outcome: winner is 'a', 'b', 'tie' or 'both_bad'."""

    model_a: str
    model_b: str
    winner: str
    line: int | None = None  # of a battles file, for its messages


@dataclass
class Rating:
    """One model's place on the leaderboard."""

    model: str
    rating: float
    ci_low: float | None
    ci_high: float | None
    battles: int
    wins: int
    ties: int
    losses: int


def read_battles_csv(text: str, name: str = "battles.csv") -> list[Battle]:
    """Battles from CSV text with columns model_a, model_b, winner (Chatbot Arena's convention);
    RatingError listing every problem as NAME:LINE: problem (lib.files.read_csv: a quote never
    closed, a missing column, an unknown winner, a model name with a control character or a line
    break...)."""
    from lib.files import read_csv

    columns, rows = read_csv(text)
    columns = [str(column).strip().lower() for column in columns]  # "Model_A" is model_a
    twice = [c for c in ("model_a", "model_b", "winner") if columns.count(c) > 1]
    if twice:  # a row would keep the last of them, silently
        places = [i + 1 for i, c in enumerate(columns) if c == twice[0]]
        problem = f"{name}:1: column {twice[0]} appears twice (columns {' and '.join(map(str, places[:2]))})"
        raise RatingError(problem, [problem])
    missing = {"model_a", "model_b", "winner"} - set(columns)
    if missing:
        problems = [f"{name}:1: missing column(s) {', '.join(sorted(missing))} (need model_a, model_b, winner)"]
        raise RatingError(problems[0], problems)
    battles, problems = [], []
    for line, row, problem in rows:
        if problem:
            problems.append(f"{name}:{line}: {problem}")
            continue
        row = {str(column).strip().lower(): value for column, value in row.items()}
        winner = (row.get("winner") or "").strip().lower()
        raw_a, raw_b = (row.get("model_a") or "").strip(), (row.get("model_b") or "").strip()
        a, b = one_line_name(raw_a), one_line_name(raw_b)
        if not winner:  # an empty cell, or a row with fewer cells than the header
            problems.append(f"{name}:{line}: missing winner")
        elif winner not in CSV_WINNERS:
            problems.append(
                f"{name}:{line}: unknown winner {row.get('winner')!r} (use model_a, model_b, tie or tie (bothbad); "
                "or a, b, tie, both_bad)"
            )
        elif not a or not b:
            problems.append(f"{name}:{line}: missing {'model_a' if not a else 'model_b'}")
        elif a == b and raw_a != raw_b:  # "Llama\u00a03" and "Llama 3", "Ｑｗｅｎ" and "Qwen"
            problems.append(f"{name}:{line}: model_a and model_b are one model spelt two ways ({a})")
        elif a == b:
            problems.append(f"{name}:{line}: model_a and model_b must be two different names")
        elif bad := [
            (column, problem)
            for column, raw in (("model_a", raw_a), ("model_b", raw_b))
            if (problem := one_line_problem(raw))
        ]:
            problems.append(f"{name}:{line}: {bad[0][0]} contains {bad[0][1]}; remove it")
        elif max(len(a), len(b)) > MAX_MODEL_CHARS:
            problems.append(f"{name}:{line}: a model name is longer than {MAX_MODEL_CHARS} characters")
        else:
            battles.append(Battle(a, b, CSV_WINNERS[winner], line))
    if not battles and not problems:
        problems.append(f"{name}:1: no battles (the file has only its header)")
    if problems:
        raise RatingError("\n".join(problems), problems)
    return battles


def read_battles_file(path: Path) -> list[Battle]:
    """Battles from a CSV file; InputFileError (missing, not a file, not UTF-8 — with the line) or
    RatingError listing the problems, each named FILE:LINE."""
    from lib.files import read_text_file

    return read_battles_csv(read_text_file(path), Path(path).name)


def _encode(battles: Iterable[Battle]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    models: dict[str, int] = {}
    ia, ib, out = [], [], []
    code = {Winner.A: 0, Winner.B: 1, Winner.TIE: 2, Winner.BOTH_BAD: 2}
    for battle in battles:
        ia.append(models.setdefault(battle.model_a, len(models)))
        ib.append(models.setdefault(battle.model_b, len(models)))
        out.append(code[battle.winner])
    return (
        list(models),
        np.array(ia, dtype=np.int64),
        np.array(ib, dtype=np.int64),
        np.array(out, dtype=np.int64),
    )


def _win_matrix(n: int, ia: np.ndarray, ib: np.ndarray, out: np.ndarray, weights=None) -> np.ndarray:
    """W[i, j]: (weighted) wins of i over j, ties counting half each way."""
    w = np.ones(len(ia)) if weights is None else weights
    wins = np.zeros((n, n))
    np.add.at(wins, (ia[out == 0], ib[out == 0]), w[out == 0])
    np.add.at(wins, (ib[out == 1], ia[out == 1]), w[out == 1])
    half = w[out == 2] / 2
    np.add.at(wins, (ia[out == 2], ib[out == 2]), half)
    np.add.at(wins, (ib[out == 2], ia[out == 2]), half)
    return wins


def _needs_ridge(wins: np.ndarray) -> bool:
    graph = (wins > 0).astype(np.int8)
    count, _ = connected_components(graph, directed=True, connection="strong")
    return count > 1


def fit_bradley_terry(wins: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Natural-log strengths (mean zero) maximising the Bradley–Terry likelihood of `wins`."""
    n = wins.shape[0]
    games = wins + wins.T
    ridge = RIDGE_IF_DISCONNECTED if _needs_ridge(wins) else 0.0
    pairs = np.triu(games, 1) > 0
    rows, cols = np.nonzero(pairs)
    w_ij, w_ji, n_ij = wins[rows, cols], wins[cols, rows], games[rows, cols]

    def objective(beta: np.ndarray) -> tuple[float, np.ndarray]:
        diff = beta[rows] - beta[cols]
        # log P(i beats j) = -log(1 + exp(-(bi - bj)))
        log_p = -np.logaddexp(0.0, -diff)
        log_q = -np.logaddexp(0.0, diff)
        nll = -(w_ij * log_p + w_ji * log_q).sum() + ridge * (beta @ beta) / 2
        p = np.exp(log_p)
        g_pair = -(w_ij - n_ij * p)  # d nll / d diff
        grad = np.zeros(n)
        np.add.at(grad, rows, g_pair)
        np.subtract.at(grad, cols, g_pair)
        return nll, grad + ridge * beta

    x0 = np.zeros(n) if start is None else start
    result = minimize(
        objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14}
    )
    beta = result.x
    return beta - beta.mean()


def to_scale(beta: np.ndarray) -> np.ndarray:
    """Natural-log strengths on the Elo-like scale: 400·log10 odds, centred at 1000."""
    return BASE + SCALE * (beta - beta.mean()) / math.log(10)


MIN_BATTLES_FOR_CI = 5  # under this, resampling a model's few battles gives a falsely narrow interval


def rank(battles: list[Battle], bootstrap: int = 1000, seed: int = 0) -> list[Rating]:
    """The leaderboard: ratings with bootstrap 95% intervals and counts, best first. A model with
    fewer than MIN_BATTLES_FOR_CI battles gets no interval (None): resampling one battle always
    draws the same battle, so its interval would be zero wide — certainty it does not have."""
    models, ia, ib, out = _encode(battles)
    if len(models) < 2:
        raise RatingError("need votes between at least two models to rank them")
    n = len(models)
    wins = _win_matrix(n, ia, ib, out)
    beta = fit_bradley_terry(wins)
    ratings = to_scale(beta)
    low = high = [None] * n
    if bootstrap > 0:
        samples = bootstrap_ratings(n, ia, ib, out, bootstrap, seed, start=beta)
        low, high = np.percentile(samples, 2.5, axis=0), np.percentile(samples, 97.5, axis=0)
    counts = {m: [0, 0, 0] for m in models}
    for a, b, o in zip(ia, ib, out, strict=True):
        ma, mb = models[a], models[b]
        if o == 2:
            counts[ma][1] += 1
            counts[mb][1] += 1
        else:
            winner, loser = (ma, mb) if o == 0 else (mb, ma)
            counts[winner][0] += 1
            counts[loser][2] += 1
    few = [sum(counts[m]) < MIN_BATTLES_FOR_CI for m in models]
    board = [
        Rating(
            m,
            float(ratings[i]),
            None if low[i] is None or few[i] else float(low[i]),
            None if high[i] is None or few[i] else float(high[i]),
            sum(counts[m]),
            counts[m][0],
            counts[m][1],
            counts[m][2],
        )
        for i, m in enumerate(models)
    ]
    return sorted(board, key=lambda r: -r.rating)


def bootstrap_ratings(n: int, ia, ib, out, rounds: int, seed: int, start=None) -> np.ndarray:
    """`rounds` × n ratings refitted on battles resampled with replacement (seeded)."""
    cells, inverse = np.unique(np.stack([ia, ib, out], axis=1), axis=0, return_inverse=True)
    freq = np.bincount(inverse.ravel(), minlength=len(cells)) / len(ia)
    rng = np.random.default_rng(seed)
    samples = np.empty((rounds, n))
    for r in range(rounds):
        weights = rng.multinomial(len(ia), freq).astype(float)
        wins = _win_matrix(n, cells[:, 0], cells[:, 1], cells[:, 2], weights)
        samples[r] = to_scale(fit_bradley_terry(wins, start=start))
    return samples


def win_rate_matrix(battles: list[Battle]) -> tuple[list[str], np.ndarray]:
    """Models and the share of head-to-head games row beat column (ties half); NaN if unplayed."""
    models, ia, ib, out = _encode(battles)
    wins = _win_matrix(len(models), ia, ib, out)
    games = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(games > 0, wins / games, np.nan)
    return models, rate
