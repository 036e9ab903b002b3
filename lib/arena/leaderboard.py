"""The leaderboard from stored votes: filtered battles -> Bradley–Terry ratings and win rates."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from db import conversations, votes
from db.engine import session_scope
from db.votes import VoteFilter
from lib.arena.rating import Battle, Rating, RatingError, rank, win_rate_matrix


@dataclass
class Board:
    """Ratings (best first), display names, and the head-to-head win-rate matrix."""

    ratings: list[Rating]
    names: dict[str, str]
    models: list[str]
    win_rates: np.ndarray
    battles: int

    def as_json(self) -> list[dict]:
        """The `cli.py leaderboard --json` shape: each rating with `model` (the endpoint id, or the
        name in a battles file) and `name` (its display name, as the table shows it)."""
        return [{**asdict(r), "name": self.names.get(r.model, r.model)} for r in self.ratings]


def battles_from_db(f: VoteFilter) -> tuple[list[Battle], dict[str, str]]:
    """Stored votes as battles between endpoint ids, with each id's display name. A vote between
    two answers of one model is no battle (an imported battle between two spellings of one name,
    made one by revision 0005): it would count as both a win and a loss."""
    with session_scope() as s:
        rows = votes.vote_battles(s, f)
        names = conversations.endpoint_names(s)
    return [Battle(a, b, w) for a, b, w in rows if a != b], names


def build_board(
    battles: list[Battle], names: dict[str, str] | None = None, bootstrap: int = 1000, seed: int = 0
) -> Board:
    """Rank battles; RatingError when there is nothing meaningful to rank."""
    if not battles:
        raise RatingError("no votes in this selection; a ranking needs votes between at least two models")
    ratings = rank(battles, bootstrap=bootstrap, seed=seed)
    models, rates = win_rate_matrix(battles)
    return Board(ratings, names or {}, models, rates, len(battles))


def leaderboard(f: VoteFilter, bootstrap: int = 1000, seed: int = 0) -> Board:
    """The leaderboard action: stored votes that pass `f`, ranked; RatingError when there are none."""
    battles, names = battles_from_db(f)
    return build_board(battles, names, bootstrap=bootstrap, seed=seed)


def votes_version() -> tuple[int, int]:
    """Changes whenever a vote is added or removed (a cache key for the page)."""
    with session_scope() as s:
        return votes.vote_data_version(s)


def voted_topics() -> list[str]:
    """Suite topics that have at least one vote, for the page's topic filter."""
    with session_scope() as s:
        return votes.suite_topics(s)
