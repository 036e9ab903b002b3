"""Corrected deflection rates: how often their 95% intervals cover the truth, and how long the
deflection view takes. Prints JSON.

Coverage is simulated with the shipped card's Chinese matrix as the detector's true error rates:
each round draws answers with a known not-answered rate, labels them through that matrix, draws
a measured matrix with the card's row counts (the matrix is itself an estimate), and checks
whether the corrected interval holds the true rate. `prior` 0 is the plain bootstrap (resampling
the counts); 0.5 is the shipped Jeffreys-smoothed one.

    python bench/rates.py [--sims 200] [--models 20 --topics 12 --prompts 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.analysis import rates as R  # noqa: E402
from lib.analysis.views import deflection_view  # noqa: E402
from lib.deflection import detector_card  # noqa: E402


def coverage(sims: int, truths: list[float], sizes: list[int], priors: list[float], rounds: int) -> list[dict]:
    """Share of simulated groups whose corrected interval covers the true not-answered rate."""
    measured = R.card_matrices(detector_card())["zh"].confusion
    truth_matrix = measured.rates()
    out = []
    for prior in priors:
        R.PRIOR = prior
        for truth in truths:
            for n in sizes:
                rng = np.random.default_rng(7)
                hits, widths = 0, []
                for s in range(sims):
                    shares = np.array([1 - truth, truth * 0.3, truth * 0.7])
                    true = rng.choice(3, size=n, p=shares)
                    labels = [R.CLASSES[rng.choice(3, p=truth_matrix[t])] for t in true]
                    counts = np.array(
                        [rng.multinomial(int(r.sum()), truth_matrix[i]) for i, r in enumerate(measured.counts)]
                    )
                    rate = R.corrected_not_answered({"zh": labels}, {"zh": R.Confusion(counts)}, rounds=rounds, seed=s)
                    hits += rate.low - 1e-9 <= truth <= rate.high + 1e-9
                    widths.append(rate.high - rate.low)
                out.append(
                    {
                        "prior": prior,
                        "true_rate": truth,
                        "n": n,
                        "coverage": hits / sims,
                        "mean_width": float(np.mean(widths)),
                    }
                )
    R.PRIOR = 0.5
    return out


def view_timing(models: int, topics: int, prompts: int) -> dict:
    """Seconds for the deflection view of a synthetic scope (twins in both languages)."""
    rng = np.random.default_rng(0)
    rows, i = [], 0
    for m in range(models):
        for t in range(topics):
            for p in range(prompts):
                for lang in ("en", "zh"):
                    label = R.CLASSES[rng.choice(3, p=[0.6, 0.1, 0.3])]
                    rows.append(
                        {
                            "response_id": i,
                            "endpoint_id": f"m{m}",
                            "model_name": f"model {m}",
                            "exchange_id": i,
                            "status": "ok",
                            "language": lang,
                            "topic": f"topic {t}",
                            "twin_key": f"{t}-{p}",
                            "kind": "probe",
                            "label": label,
                            "label_source": "parallax-deflection@bench",
                            "labels": {"parallax-deflection@bench": label},
                        }
                    )
                    i += 1
    card = detector_card()
    start = time.perf_counter()
    view = deflection_view(rows, card)
    seconds = time.perf_counter() - start
    return {
        "answers": len(rows),
        "cells": len(view["rates"]) + 2 * len(view["language_gap"]),
        "seconds": round(seconds, 3),
    }


def main() -> None:
    """Run both measurements and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=R.BOOTSTRAP)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--topics", type=int, default=12)
    parser.add_argument("--prompts", type=int, default=20)
    args = parser.parse_args()
    result = {
        "view": view_timing(args.models, args.topics, args.prompts),
        "coverage": coverage(args.sims, [0.0, 0.05, 0.3, 0.6], [10, 30, 200], [0.0, 0.5], args.rounds),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
