"""Bradley–Terry fit against evalica's reference scores, divergence safety, bootstrap seeds."""

import csv
import math

import numpy as np
import pytest

from lib.arena.rating import Battle, RatingError, rank, read_battles_csv
from tests.conftest import shared_file


def _reference(name: str):
    battles = []
    with open(shared_file("arena", f"{name}.csv")) as f:
        for row in csv.DictReader(f):
            winner = {"left": "a", "right": "b", "tie": "tie"}[row["winner"]]
            battles.append(Battle(row["left"], row["right"], winner))
    golden = {}
    with open(shared_file("arena", f"{name}-golden.csv")) as f:
        for row in csv.DictReader(f):
            if row["algorithm"] == "bradley_terry":
                golden[row["item"]] = float(row["score"])
    return battles, golden


@pytest.mark.parametrize("name", ["simple", "food"])
def test_fit_reproduces_reference_bradley_terry_order_and_ratios(name):
    battles, golden = _reference(name)
    board = rank(battles, bootstrap=0)
    assert [r.model for r in board] == sorted(golden, key=lambda m: -golden[m])
    strength = {r.model: 10 ** ((r.rating - 1000) / 400) for r in board}
    best = board[0].model
    for model in golden:
        ours = strength[model] / strength[best]
        ref = golden[model] / golden[best]
        assert ours == pytest.approx(ref, rel=1e-4), model


def test_a_model_that_always_wins_does_not_diverge():
    battles = [Battle("champ", "b", "a")] * 20 + [Battle("b", "c", "a")] * 5 + [Battle("c", "b", "a")] * 5
    board = rank(battles, bootstrap=50, seed=1)
    assert board[0].model == "champ"
    assert all(math.isfinite(r.rating) and math.isfinite(r.ci_low) for r in board)
    assert board[0].rating - board[-1].rating < 3000


def test_bootstrap_is_reproducible_with_a_seed_and_brackets_the_fit():
    rng = np.random.default_rng(0)
    battles = [
        Battle(*rng.choice(["x", "y", "z"], 2, replace=False), rng.choice(["a", "b", "tie"])) for _ in range(300)
    ]
    one, two = rank(battles, bootstrap=100, seed=7), rank(battles, bootstrap=100, seed=7)
    assert [(r.ci_low, r.ci_high) for r in one] == [(r.ci_low, r.ci_high) for r in two]
    assert [(r.ci_low, r.ci_high) for r in one] != [(r.ci_low, r.ci_high) for r in rank(battles, 100, seed=8)]
    for r in one:
        assert r.ci_low <= r.rating <= r.ci_high
        assert r.battles == r.wins + r.ties + r.losses


def test_both_bad_counts_as_a_tie():
    assert [r.rating for r in rank([Battle("p", "q", "both_bad")] * 3, bootstrap=0)] == pytest.approx([1000, 1000])


def test_fewer_than_two_models_is_a_clear_error():
    with pytest.raises(RatingError, match="at least two models"):
        rank([], bootstrap=0)


def test_battles_csv_errors_name_the_line():
    with pytest.raises(RatingError, match="battles.csv:1: missing column"):
        read_battles_csv("a,b,winner\nx,y,model_a\n")
    with pytest.raises(RatingError, match="battles.csv:3: unknown winner 'left'"):
        read_battles_csv("model_a,model_b,winner\nx,y,model_a\nx,y,left\n")
    ok = read_battles_csv("model_a,model_b,winner\nx,y,tie (bothbad)\ny,x,model_b\n")
    assert [b.winner for b in ok] == ["tie", "b"]


def test_a_model_with_too_few_battles_gets_no_interval_rather_than_a_zero_wide_one():
    one = rank([Battle("x", "y", "a")], bootstrap=200)
    assert all(r.ci_low is None and r.ci_high is None for r in one)  # resampling one battle: no spread
    many = rank([Battle("x", "y", "a"), Battle("x", "y", "b")] * 5 + [Battle("x", "z", "a")] * 2, bootstrap=200)
    by_model = {r.model: r for r in many}
    assert by_model["x"].ci_low < by_model["x"].rating < by_model["x"].ci_high
    assert by_model["z"].ci_low is None  # 2 battles


def test_the_json_board_gives_each_model_its_display_name_beside_its_id():
    from lib.arena.leaderboard import build_board

    battles = [Battle("qwen-max", "gpt", "a")] * 3 + [Battle("gpt", "qwen-max", "a")]
    rows = build_board(battles, {"qwen-max": "Qwen Max (DashScope)"}, bootstrap=20).as_json()
    assert {(r["model"], r["name"]) for r in rows} == {("qwen-max", "Qwen Max (DashScope)"), ("gpt", "gpt")}
