"""Compare: one prompt to several models, answers streamed side by side, each column with its
own history; named votes when exactly two models answer."""

import streamlit as st

from lib import conversations, ui
from lib.present import WINNER_TEXT
from lib.providers.chat import Column, PromptError, ask, validate_prompt
from lib.providers.endpoints import MAX_TEMPERATURE
from lib.vocab import Mode

MAX_MODELS = 6
PER_ROW = 4  # columns per row when a stored turn has more answers than Compare asks at once

st.title("Compare")
ui.database_or_stop()
endpoints = ui.endpoints_or_stop()

conversation_id = st.session_state.get(ui.CONVERSATION)
conv = conversations.load(conversation_id) if conversation_id is not None else None
imported = conv is not None and conv.mode == Mode.IMPORTED
# a suite run's item is kept as the run stored it: another answer or turn would count in its rates
suite_item = conv is not None and conv.mode == Mode.SUITE
frozen = imported or suite_item
if conv is None:
    ui.offer_example("compare")

# every setting keeps its value across page switches (persist_state): Streamlit otherwise drops
# the state of widgets the last run did not draw
ui.drop_unknown(ui.COMPARE_MODELS, endpoints)
with st.sidebar:
    selected = st.multiselect(
        "Models",
        list(endpoints),
        default=[i for i in ("smollm2", "smollm2-guarded") if i in endpoints],
        format_func=lambda i: endpoints[i].name,
        max_selections=MAX_MODELS,
        key=ui.COMPARE_MODELS,
        help="Up to six models answer each prompt side by side.",
        persist_state="session",
    )
    system = st.text_area("System prompt (optional)", key=ui.COMPARE_SYSTEM, height=80, persist_state="session")
    temperature = st.number_input(
        "Temperature",
        0.0,
        MAX_TEMPERATURE,
        None,
        0.05,
        key="compare_temperature",
        placeholder="each model's own",
        help=f"From 0 to {MAX_TEMPERATURE:g} (a value outside is not taken: the field keeps the last one that "
        "was). Empty: each model's own (its endpoint's `params.temperature`, else the provider's default), as "
        "the command line's `ask` does. Ignored by models that take no temperature (o1, o3, R1).",
        persist_state="session",
    )
    max_tokens = st.number_input(
        "Max output tokens",
        16,
        32000,
        None,
        16,
        key="compare_max_tokens",
        placeholder="each model's own",
        help="Empty: each model's own budget (its endpoint's `max_tokens`, else the provider's default), "
        "as the command line's `ask` does. Reasoning models spend part of it thinking.",
        persist_state="session",
    )
    # what every turn and retry sends: empty fields leave each endpoint's own params
    overrides = {"temperature": temperature, "max_tokens": None if max_tokens is None else int(max_tokens)}
    if st.button("New conversation", icon=":material/add:", width="stretch"):
        st.session_state.pop(ui.CONVERSATION, None)
        st.rerun()

for endpoint_id in selected:
    if endpoints[endpoint_id].description:
        shown = endpoints[endpoint_id]
        st.caption(f"**{ui.inline_text(shown.name)}**: {ui.inline_text(shown.description)}")


def column_title(slot: str, response) -> str:
    """A column's heading: the configured name, else the name stored with the answer."""
    if imported:
        return f"{response.display_name} (imported)"
    return endpoints[slot].name if slot in endpoints else f"{response.display_name} (no longer configured)"


def render_vote(exchange) -> None:
    """Named vote between exactly two answers of the last exchange."""
    if exchange.id in conv.winners:
        who = "The imported vote" if imported else "Your vote"
        st.success(f"{who}: {WINNER_TEXT[conv.winners[exchange.id]]} (left is A, right is B)")
        return
    st.caption("Which is better? The left answer is A, the right one B.")
    cols = st.columns(4)
    for col, (winner, text) in zip(cols, WINNER_TEXT.items(), strict=True):
        if col.button(text, key=f"vote_{exchange.id}_{winner}", width="stretch"):
            conversations.vote(exchange.id, winner, voter=ui.current_voter())
            st.rerun()


def retry(exchange, slot: str) -> None:
    """Re-ask one model for an existing turn."""
    with st.spinner(f"Asking {endpoints[slot].name} again…"):
        ask(
            exchange.prompt,
            [Column(slot, endpoints[slot])],
            system=exchange.system_prompt,
            conversation_id=exchange.conversation_id,
            exchange_id=exchange.id,
            overrides=overrides,
        )
    st.rerun()


if conv is not None:
    for index, exchange in enumerate(conv.exchanges):
        last = index == len(conv.exchanges) - 1
        with st.chat_message("user"):
            ui.render_text(exchange.prompt)
        latest = exchange.latest
        shown = [s for s in conv.slots if s in latest]
        per_row = len(shown) if len(shown) <= MAX_MODELS else PER_ROW
        for start in range(0, max(1, len(shown)), max(1, per_row)):
            row = shown[start : start + per_row]
            for col, slot in zip(st.columns(max(1, per_row)), row, strict=False):
                with col, st.container(border=True, key=f"answer_{exchange.id}_{slot}"):
                    ui.render_response(
                        latest[slot], title=column_title(slot, latest[slot]), key_prefix=f"c{exchange.id}"
                    )
                    if (
                        last
                        and not frozen
                        and exchange.id not in conv.winners  # a vote stays with the answers it was given
                        and slot in endpoints
                        and st.button("Retry", key=f"retry_{exchange.id}_{slot}", icon=":material/refresh:")
                    ):
                        retry(exchange, slot)
        if exchange.id in conv.winners:  # an earlier turn's vote too (cast here or with `cli.py vote`)
            render_vote(exchange)
        elif last and len(shown) == 2 and not any(latest[slot].failed for slot in shown):
            render_vote(exchange)  # a failed side is retried, not voted on
    if imported:
        st.info(
            f"Imported answers (from {conv.meta.get('source', 'a file')}) are kept as they were: they cannot be "
            "continued or retried. Press *New conversation* to ask your models."
        )
    elif suite_item:
        st.info(
            "These answers are an item of a suite run: they are kept as the run stored them (another answer "
            "would count twice in its rates), so they cannot be continued or retried here; resuming the run "
            "retries its failed items. Press *New conversation* to ask your models."
        )

if prompt := st.chat_input("Ask every selected model…", key="compare_prompt", disabled=frozen):
    try:
        validate_prompt(prompt)
        if not selected:
            raise PromptError("no model selected: pick at least one in the sidebar")
    except PromptError as exc:
        st.error(ui.inline_text(str(exc).capitalize()))
        st.stop()
    with st.chat_message("user"):
        ui.render_text(prompt)
    columns = [Column(i, endpoints[i]) for i in selected]
    placeholders = {}
    for col, column in zip(st.columns(len(columns)), columns, strict=True):
        with col, st.container(border=True, key=f"live_{column.slot}"):
            placeholders[column.slot] = ui.live_column(st.empty(), column.endpoint.name)
    ask(
        prompt,
        columns,
        system=system or None,
        conversation_id=conversation_id,
        overrides=overrides,
        on_update=lambda target, state: placeholders[target.key](target, state),
        # remembered before streaming, so a new prompt sent mid-stream continues this conversation
        on_start=lambda conversation, _exchange: st.session_state.__setitem__(ui.CONVERSATION, conversation),
    )
    st.rerun()
