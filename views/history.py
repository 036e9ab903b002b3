"""History: past conversations, newest first, searchable and paginated; open one to continue it."""

import streamlit as st

from lib import conversations, ui
from lib.providers.endpoints import EndpointConfigError, load_endpoints
from lib.vocab import Mode

PER_PAGE = 20
PAGE = "history_page"

st.title("History")
ui.database_or_stop()
ui.offer_example("history")

cols = st.columns([4, 1, 1])
query = cols[0].text_input(
    "Search prompts and answers",
    key="history_query",
    placeholder="e.g. Tiananmen, 天安门, dumplings",
    persist_state="session",
)
mode = cols[1].selectbox("Mode", ["all", *Mode.ALL], key="history_mode", persist_state="session")
label = cols[2].selectbox("Label", ["any", *ui.LABELS], key="history_label", persist_state="session")
filters = (query, mode, label)
if st.session_state.get("history_filters") != filters:
    st.session_state["history_filters"] = filters
    st.session_state[PAGE] = 0
page = st.session_state.get(PAGE, 0)

rows, total = conversations.history(
    query, None if mode == "all" else mode, None if label == "any" else label, page=page, per_page=PER_PAGE
)
pages = max(1, -(-total // PER_PAGE))
st.caption(f"{total} conversation{'s' if total != 1 else ''} · page {page + 1} of {pages}")
if not rows:
    st.info(
        "No conversations match."
        if query or mode != "all" or label != "any"
        else "No conversations yet: ask something on the Compare page."
    )

for row in rows:
    with st.container(border=True, key=f"history_row_{row.id}"):
        left, right = st.columns([6, 1])
        models = ui.inline_text(", ".join(row.models)) if row.models else "hidden until voted"
        left.markdown(f"**{ui.inline_text(row.title) or '(untitled)'}**")
        left.caption(f"#{row.id} · {row.mode} · {row.turns} turn(s) · {models} · {row.updated_at:%Y-%m-%d %H:%M}")
        if row.mode != Mode.ARENA and right.button("Open", key=f"open_{row.id}"):
            st.session_state[ui.CONVERSATION] = row.id
            if row.mode != Mode.IMPORTED:  # continuing it asks the same models with its system prompt
                opened = conversations.load(row.id)
                try:  # a broken endpoints file is explained on Compare, not inside this row (it cut the list)
                    configured = load_endpoints()
                except EndpointConfigError:
                    configured = {}
                still_configured = [s for s in opened.slots if s in configured]
                if still_configured:  # else the current pick stays: those models are gone
                    st.session_state[ui.COMPARE_MODELS] = still_configured
                st.session_state[ui.COMPARE_SYSTEM] = opened.system_prompt or ""
            st.switch_page("views/compare.py")

nav = st.columns([1, 1, 6])
if nav[0].button("◀ Newer", disabled=page == 0, key="history_prev"):
    st.session_state[PAGE] = page - 1
    st.rerun()
if nav[1].button("Older ▶", disabled=page + 1 >= pages, key="history_next"):
    st.session_state[PAGE] = page + 1
    st.rerun()
