"""Export: rated pairs as training data (TRL, OpenAI preference, KTO) or flat CSV/JSONL."""

import tempfile
from pathlib import Path

import streamlit as st

from lib import ui
from lib.arena.export import FORMAT_DOCS, FORMATS, NothingToExport, export, file_names
from lib.filters import vote_filter
from lib.present import plural

READY = "export_ready"

st.title("Export")
st.caption("Votes with a winner become preference pairs; ties and both-bad are left out of pairwise formats.")
ui.database_or_stop()

fmt = st.selectbox(
    "Format", FORMATS, format_func=lambda f: f"{f} — {FORMAT_DOCS[f]}", key="export_format", persist_state="session"
)
cols = st.columns(4)
blind_only = cols[0].toggle("Blind votes only", value=False, key="export_blind", persist_state="session")
exclude_leaked = cols[1].toggle("Exclude identity-leaked", value=True, key="export_leaked", persist_state="session")
language = cols[2].selectbox("Language", ["any", "en", "zh"], key="export_language", persist_state="session")
dates = cols[3].date_input("Dates", value=(), key="export_dates", persist_state="session")
chosen = vote_filter(
    blind_only=blind_only,
    include_leaked=not exclude_leaked,
    language=language,
    first=dates[0] if len(dates) > 0 else None,
    last=dates[1] if len(dates) > 1 else None,
)

if st.button("Prepare export", type="primary", key="export_go"):
    data_name, card_name = file_names(fmt)
    folder = Path(tempfile.mkdtemp(prefix="parallax-export-"))
    try:
        summary = export(fmt, chosen, folder / data_name, card=folder / card_name)
    except NothingToExport as exc:
        st.info(ui.inline_text(str(exc).capitalize()) + ".")
    else:
        st.session_state[READY] = summary

summary = st.session_state.get(READY)
if summary is not None and summary.format == fmt:
    st.success(f"{plural(summary.rows, 'row')} ready.")
    data = Path(summary.path).read_bytes()
    card = Path(summary.card_path).read_text(encoding="utf-8")
    left, right = st.columns(2)
    left.download_button(
        "Download data",
        data,
        file_name=Path(summary.path).name,
        mime="text/csv" if fmt == "csv" else "application/jsonl",
        key="export_download",
    )
    right.download_button(
        "Download dataset card",
        card,
        file_name=Path(summary.card_path).name,
        mime="text/markdown",
        key="export_card",
    )
    with st.expander("Dataset card"):
        st.markdown(card)
