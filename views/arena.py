"""Arena: blind battles between two models drawn at random; names are revealed only after the
vote. The pair lives in server-side session state, so no name reaches the browser early."""

import streamlit as st

from lib import conversations, ui
from lib.arena.battles import BattleError, BlindBattle, draw_pair, vote_blind
from lib.present import WINNER_TEXT
from lib.providers.chat import Column, PromptError, ask, validate_prompt
from lib.providers.endpoints import endpoint_state
from lib.vocab import Mode

st.title("Arena")
st.caption("Two anonymous models answer; vote for the better one, then see who they were.")
ui.database_or_stop()
endpoints = ui.endpoints_or_stop()

ready = [i for i, e in endpoints.items() if endpoint_state(e, probe=False).ready]
with st.sidebar:
    enabled = st.multiselect(
        "Models in the arena",
        list(endpoints),
        default=ready,
        format_func=lambda i: endpoints[i].name,
        key="arena_models",
    )
    new_battle = st.button("New battle", icon=":material/casino:", width="stretch", key="arena_new")

battle: BlindBattle | None = st.session_state.get(ui.ARENA_BATTLE)
if new_battle or battle is None or any(s not in endpoints for s in battle.slots.values()):
    try:
        battle = BlindBattle(conversation_id=None, slots=draw_pair(enabled))
    except ValueError as exc:
        st.info(f"To start a battle, {exc} in the sidebar.")
        st.stop()
    st.session_state[ui.ARENA_BATTLE] = battle

conv = conversations.load(battle.conversation_id) if battle.conversation_id is not None else None

last_pair = None
if conv is not None:
    for exchange in conv.exchanges:
        with st.chat_message("user"):
            st.markdown(exchange.prompt)
        latest = exchange.latest
        cols = st.columns(2)
        for col, slot in zip(cols, ("a", "b"), strict=True):
            if slot in latest:
                with col, st.container(border=True, key=f"arena_answer_{exchange.id}_{slot}"):
                    ui.render_response(
                        latest[slot],
                        title=f"Model {slot.upper()}",
                        show_label=False,
                        key_prefix=f"arena{exchange.id}",
                        anonymous=battle.voted is None,
                    )
        if "a" in latest and "b" in latest:
            last_pair = (latest["a"], latest["b"])

if battle.voted is None and last_pair is not None:
    st.markdown("**Which answer is better?**")
    for col, (winner, text) in zip(st.columns(4), WINNER_TEXT.items(), strict=True):
        if col.button(text, key=f"arena_vote_{winner}", width="stretch"):
            try:
                vote_blind(battle, winner, voter=ui.current_voter())
            except BattleError as exc:
                st.error(str(exc).capitalize())
            else:
                st.rerun()

if battle.voted is not None:
    with st.container(border=True, key="arena_reveal"):
        st.success(f"Your vote: {WINNER_TEXT[battle.voted]}")
        st.markdown(
            f"**Model A** was **{endpoints[battle.slots['a']].name}** · "
            f"**Model B** was **{endpoints[battle.slots['b']].name}**"
        )
        if battle.leaks:
            st.warning(
                "A model named itself or its maker ("
                + "; ".join(f"“{x}”" for x in battle.leaks[:3])
                + "), so this battle is flagged as identity-leaked and left out of the blind "
                "leaderboard by default."
            )
        st.caption("Press *New battle* in the sidebar for another pair.")

if prompt := st.chat_input("Ask both models…", key="arena_prompt", disabled=battle.voted is not None):
    try:
        validate_prompt(prompt)
    except PromptError as exc:
        st.error(str(exc).capitalize())
        st.stop()
    with st.chat_message("user"):
        st.markdown(prompt)
    placeholders = {}
    for col, slot in zip(st.columns(2), ("a", "b"), strict=True):
        with col, st.container(border=True):
            placeholders[slot] = ui.live_column(st.empty(), f"Model {slot.upper()}", anonymous=True)
    columns = [Column(slot, endpoints[endpoint_id]) for slot, endpoint_id in battle.slots.items()]
    ask(
        prompt,
        columns,
        conversation_id=battle.conversation_id,
        mode=Mode.ARENA,
        meta={"battle": dict(battle.slots)},
        on_update=lambda target, state: placeholders[target.key](target, state),
        on_start=lambda conversation, _exchange: setattr(battle, "conversation_id", conversation),
    )
    st.rerun()
