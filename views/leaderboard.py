"""Leaderboard: Bradley–Terry ratings from stored votes, with bootstrap intervals and win rates."""

import pandas as pd
import streamlit as st

from lib import ui
from lib.analysis.charts import ratings_chart, win_rate_heatmap
from lib.arena.leaderboard import leaderboard, voted_topics, votes_version
from lib.arena.rating import RatingError
from lib.filters import VoteFilter, vote_filter

st.title("Leaderboard")
ui.database_or_stop()
ui.offer_example("leaderboard")

cols = st.columns(5)
blind_only = cols[0].toggle("Blind votes only", value=True, key="lb_blind", persist_state="session")
include_leaked = cols[1].toggle("Include identity-leaked", value=False, key="lb_leaked", persist_state="session")
language = cols[2].selectbox("Language", ["any", "en", "zh"], key="lb_language", persist_state="session")
dates = cols[3].date_input(  # empty: every vote, as `leaderboard` and the Export page count them
    "Dates", value=(), key="lb_dates", persist_state="session", help="Empty: every vote."
)
rounds = cols[4].number_input("Bootstrap rounds", 0, 5000, 500, 100, key="lb_rounds", persist_state="session")
topics = voted_topics()
ui.drop_unknown("lb_topic", ["any", *topics])
topic = st.selectbox("Suite topic", ["any", *topics], key="lb_topic", persist_state="session") if topics else "any"
chosen = vote_filter(
    blind_only=blind_only,
    include_leaked=include_leaked,
    language=language,
    first=dates[0] if len(dates) > 0 else None,
    last=dates[1] if len(dates) > 1 else None,
    topic=topic,
)


@st.cache_data(show_spinner="Fitting ratings…", max_entries=32)
def cached_board(filter_key: tuple, version: tuple, rounds: int):
    """The fitted board; the key includes the vote table's version, so new votes refit."""
    return leaderboard(VoteFilter(**dict(filter_key)), bootstrap=rounds, seed=0)


try:
    board = cached_board(chosen.key(), votes_version(), int(rounds))
except RatingError as exc:
    hint = (
        "Only blind votes count while *Blind votes only* is on: switch it off to include Compare's named votes, "
        "or vote in the Arena."
        if blind_only
        else "Vote in the Arena (blind) or on Compare with two models."
    )
    st.info(f"Nothing to rank yet: {ui.inline_text(str(exc))}. {hint}")
    st.stop()

st.caption(
    f"{board.battles} battle{'s' if board.battles != 1 else ''} · ties and both-bad count as half a win each way"
    " · rating = 1000 + 400·log10(odds)"
)
table = pd.DataFrame(
    [
        {
            "rank": i + 1,
            "model": board.names.get(r.model, r.model),
            "rating": round(r.rating),
            "95% CI": "– (too few battles)" if r.ci_low is None else f"{r.ci_low:.0f} – {r.ci_high:.0f}",
            "battles": r.battles,
            "wins": r.wins,
            "ties": r.ties,
            "losses": r.losses,
        }
        for i, r in enumerate(board.ratings)
    ]
)
ui.table(table, hide_index=True, width="stretch", key="lb_table")
sparse = [board.names.get(r.model, r.model) for r in board.ratings if r.battles < 5]
if sparse:
    st.caption(f"Few battles (under 5) for: {ui.inline_text(', '.join(sparse))} — their ratings are rough.")
left, right = st.columns(2)
left.plotly_chart(ratings_chart(board.ratings, board.names), key="lb_chart")
right.plotly_chart(
    win_rate_heatmap(board.models, board.win_rates, board.names, [r.model for r in board.ratings]), key="lb_heatmap"
)
