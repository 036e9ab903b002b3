"""Time the Bradley–Terry fit and a 1,000-round bootstrap on 100k synthetic battles among 50
models. Prints one JSON object: {"battles", "models", "fit_s", "bootstrap_s", "rounds"}."""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.arena.rating import Battle, _encode, _win_matrix, bootstrap_ratings, fit_bradley_terry  # noqa: E402


def synthetic(n_battles: int = 100_000, n_models: int = 50, seed: int = 0) -> list[Battle]:
    """Battles drawn from known strengths, with 10% ties."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0, 1, n_models)
    a = rng.integers(0, n_models, n_battles)
    b = (a + rng.integers(1, n_models, n_battles)) % n_models
    p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
    u = rng.random(n_battles)
    winner = np.where(u < 0.1, "tie", np.where(rng.random(n_battles) < p, "a", "b"))
    return [Battle(f"m{i}", f"m{j}", w) for i, j, w in zip(a, b, winner, strict=True)]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    battles = synthetic()
    start = time.perf_counter()
    models, ia, ib, out = _encode(battles)
    beta = fit_bradley_terry(_win_matrix(len(models), ia, ib, out))
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    bootstrap_ratings(len(models), ia, ib, out, rounds, seed=0, start=beta)
    bootstrap_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "battles": len(battles),
                "models": len(models),
                "rounds": rounds,
                "fit_s": round(fit_s, 3),
                "bootstrap_s": round(bootstrap_s, 2),
            }
        )
    )


if __name__ == "__main__":
    # --help prints what the bench measures instead of starting it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
