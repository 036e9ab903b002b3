"""Parallax: compare language models side by side. Entry point: page config, settings check,
sign-in (required whenever the app listens beyond loopback), navigation, sidebar."""

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lib import storage, ui  # noqa: E402

# an emoji icon: Streamlit draws it as an inline SVG. A `:material/…:` page icon would make the
# browser fetch it from fonts.gstatic.com (the widgets' Material icons come from a bundled font);
# set here, before st.navigation, so no page's icon replaces it as the tab's icon.
st.set_page_config(page_title="Parallax", page_icon="🔭", layout="wide")
try:
    storage.check_settings()
except storage.ConfigError as exc:
    st.error(f"Parallax cannot start: {ui.inline_text(str(exc))}.")
    st.stop()
ui.require_access()

page = st.navigation(
    {
        "Chat": [
            st.Page("views/compare.py", title="Compare", icon=":material/view_column:", default=True),
            st.Page("views/arena.py", title="Arena", icon=":material/sports_mma:"),
            st.Page("views/history.py", title="History", icon=":material/history:"),
        ],
        "Results": [
            st.Page("views/suites.py", title="Suites", icon=":material/science:"),
            st.Page("views/analysis.py", title="Analysis", icon=":material/insights:"),
            st.Page("views/leaderboard.py", title="Leaderboard", icon=":material/leaderboard:"),
            st.Page("views/export.py", title="Export", icon=":material/download:"),
        ],
        "Setup": [
            st.Page("views/settings.py", title="Settings", icon=":material/settings:"),
        ],
    }
)
ui.sidebar(page.title)
page.run()
