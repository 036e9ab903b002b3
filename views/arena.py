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

POOL = "arena_models"
POOL_CHOSEN = "arena_pool_chosen"  # the user changed the pool: stop following what is ready
DRAWN_FROM = "arena_drawn_from"  # the pool the current pair was drawn from

# the default pool is what can answer now (local servers probed, briefly cached); it follows
# readiness until the user picks, but never under a battle in progress
ready = [i for i, e in endpoints.items() if endpoint_state(e).ready]
ui.drop_unknown(POOL, endpoints)
battle: BlindBattle | None = st.session_state.get(ui.ARENA_BATTLE)
in_progress = battle is not None and battle.conversation_id is not None and battle.voted is None
if not st.session_state.get(POOL_CHOSEN) and not in_progress and st.session_state.get(POOL) != ready:
    st.session_state[POOL] = ready
with st.sidebar:
    enabled = st.multiselect(
        "Models in the arena",
        list(endpoints),
        format_func=lambda i: endpoints[i].name,
        key=POOL,
        on_change=lambda: st.session_state.__setitem__(POOL_CHOSEN, True),
        persist_state="session",
    )
    new_battle = st.button("New battle", icon=":material/casino:", width="stretch", key="arena_new")

# a new pair when asked, when the pool changes (whatever the current pair: redrawing only when
# a model of the pair leaves would tell which models are in it), or when a model is gone
pool = sorted(enabled)
if (
    new_battle
    or battle is None
    or st.session_state.get(DRAWN_FROM) != pool
    or any(s not in endpoints for s in battle.slots.values())
):
    try:
        battle = BlindBattle(conversation_id=None, slots=draw_pair(enabled))
    except ValueError as exc:
        st.info(f"To start a battle, {ui.inline_text(str(exc))} in the sidebar.")
        st.stop()
    st.session_state[ui.ARENA_BATTLE] = battle
    st.session_state[DRAWN_FROM] = pool

conv = conversations.load(battle.conversation_id) if battle.conversation_id is not None else None

last_pair = None
if conv is not None:
    for exchange in conv.exchanges:
        with st.chat_message("user"):
            ui.render_text(exchange.prompt)
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
            last_pair = (exchange, latest["a"], latest["b"])

failed = [slot for slot, r in zip(("a", "b"), last_pair[1:], strict=True) if r.failed] if last_pair else []
if battle.voted is None and failed:
    # a failed side is not a loss: retry it, or skip the battle (it stays unrevealed and unvoted)
    exchange = last_pair[0]
    st.warning(
        f"Model {' and '.join(s.upper() for s in failed)} failed on this turn, so it cannot be voted on. "
        "Retry it, or skip to a new battle."
    )
    for col, slot in zip(st.columns(len(failed) + 1), [*failed, None], strict=True):
        if slot is None:
            if col.button("Skip this battle", key="arena_skip", icon=":material/skip_next:", width="stretch"):
                st.session_state.pop(ui.ARENA_BATTLE, None)
                st.rerun()
        elif col.button(f"Retry model {slot.upper()}", key=f"arena_retry_{slot}", icon=":material/refresh:"):
            with st.spinner(f"Asking model {slot.upper()} again…"):
                ask(
                    exchange.prompt,
                    [Column(slot, endpoints[battle.slots[slot]])],
                    conversation_id=battle.conversation_id,
                    exchange_id=exchange.id,
                    mode=Mode.ARENA,
                )
            st.rerun()
elif battle.voted is None and last_pair is not None:
    st.markdown("**Which answer is better?**")
    for col, (winner, text) in zip(st.columns(4), WINNER_TEXT.items(), strict=True):
        if col.button(text, key=f"arena_vote_{winner}", width="stretch"):
            try:
                vote_blind(battle, winner, voter=ui.current_voter())
            except BattleError as exc:
                st.error(ui.inline_text(str(exc).capitalize()))
            else:
                st.rerun()

if battle.voted is not None:
    with st.container(border=True, key="arena_reveal"):
        st.success(f"Your vote: {WINNER_TEXT[battle.voted]}")
        st.markdown(
            f"**Model A** was **{ui.inline_text(endpoints[battle.slots['a']].name)}** · "
            f"**Model B** was **{ui.inline_text(endpoints[battle.slots['b']].name)}**"
        )
        if battle.leaks:
            st.warning(
                "A model named itself or its maker ("
                + "; ".join(f"“{ui.inline_text(x)}”" for x in battle.leaks[:3])
                + "), so this battle is flagged as identity-leaked and left out of the blind "
                "leaderboard by default."
            )
        st.caption("Press *New battle* in the sidebar for another pair.")

if prompt := st.chat_input("Ask both models…", key="arena_prompt", disabled=battle.voted is not None):
    try:
        validate_prompt(prompt)
    except PromptError as exc:
        st.error(ui.inline_text(str(exc).capitalize()))
        st.stop()
    with st.chat_message("user"):
        ui.render_text(prompt)
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
