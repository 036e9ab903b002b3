"""Parallax: compare language models side by side. Entry point: page config, navigation, sidebar."""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lib import ui  # noqa: E402

st.set_page_config(page_title="Parallax", page_icon="🔭", layout="wide")

page = st.navigation(
    {
        "Chat": [
            st.Page("views/compare.py", title="Compare", icon="🔭", default=True),
            st.Page("views/arena.py", title="Arena", icon="⚔️"),
            st.Page("views/history.py", title="History", icon="🗂️"),
        ],
        "Results": [
            st.Page("views/suites.py", title="Suites", icon="🧪"),
            st.Page("views/analysis.py", title="Analysis", icon="🧭"),
            st.Page("views/leaderboard.py", title="Leaderboard", icon="🏆"),
            st.Page("views/export.py", title="Export", icon="📦"),
        ],
        "Setup": [
            st.Page("views/settings.py", title="Settings", icon="⚙️"),
        ],
    }
)
ui.sidebar()
page.run()
