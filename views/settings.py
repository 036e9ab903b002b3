"""Settings: the endpoints, which key variable each needs and whether it is set (never the key),
and, for an admin only, add or edit an endpoint in the user's file and test a connection. A
change that would send a key to a host it did not go to before asks for a confirmation naming
the key variable and the host."""

import streamlit as st

from lib import ui
from lib.providers.chat import check_connection
from lib.providers.endpoints import (
    EndpointConfigError,
    NeedsConfirmation,
    endpoint_ids,
    endpoint_state,
    key_is_set,
    save_user_endpoint,
    user_endpoints_path,
)
from lib.vocab import Status

SAVED = "settings_saved_message"
# the form's label for each field an endpoint message names (messages use the file's names)
FORM_LABELS = {
    "base_url": "Base URL",
    "key_env": "Key variable name",
    "model": "Model name",
    "name": "Display name",
}


def form_message(message: str) -> str:
    """An endpoint problem in the form's words: each field it names gets its label beside it at
    its first mention ("'Key variable name' (key_env) must name…", "is missing 'Model name'
    (model)"); the endpoint's own id ("the endpoint 'model'") is left as it is."""
    import re

    head = re.match(r"the endpoint '[^']*'", message)
    start = head.end() if head else 0
    seen: set[str] = set()

    def label(match: re.Match) -> str:
        field = match.group(1) or match.group(2)
        if field in seen:
            return match.group(0)
        seen.add(field)
        return f"'{FORM_LABELS[field]}' ({field})"

    quoted = "|".join(FORM_LABELS)
    rest = re.sub(rf"'({quoted})'|(?<![\w'])(base_url|key_env)(?![\w'])", label, message[start:])
    return message[:start] + rest


def not_saved(error: EndpointConfigError) -> None:
    """Why the form was not saved: its one problem, or each of them on a line of its own."""
    shown = [ui.inline_text(form_message(problem)) for problem in error.problems]
    st.error(f"Not saved: {shown[0]}" if len(shown) == 1 else "Not saved:\n" + "\n".join(f"- {p}" for p in shown))


PENDING = "settings_pending_save"  # (endpoint id, entry, KeyDestination) awaiting a confirmation

st.title("Settings")
endpoints = ui.endpoints_or_stop()
if message := st.session_state.pop(SAVED, None):
    st.success(ui.inline_text(message))  # the path is shown as written (it is the operator's, not Markdown)
    st.toast(ui.inline_text(message), icon=":material/check:")  # seen where the Save button is, too

st.subheader("Endpoints")
ui.table(
    [
        {
            "id": e.id,
            "name": e.name,
            "kind": e.kind,
            "model": e.model,
            "from": e.source,
            "key variable": e.key_env or "—",
            "key set": ("yes" if key_is_set(e) else "no") if e.key_env else "—",
            "state": endpoint_state(e, probe=False).status,
        }
        for e in endpoints.values()
    ],
    hide_index=True,
    width="stretch",
    key="settings_table",
)

# --- Display: a per-session preference for everyone (the endpoint tools below are admin-only)
st.subheader("Display")
st.toggle(
    "Render maths in answers",
    value=ui.maths_on(),
    key="settings_maths",
    on_change=lambda: st.session_state.__setitem__(ui.MATHS, st.session_state["settings_maths"]),
    help="Off: a $ in an answer is a dollar sign ('$5 and $10' stays as written). On: $…$ is "
    "rendered as LaTeX maths. Remote images in answers are never loaded either way.",
)

if not ui.is_admin():
    st.info("Only an admin can edit endpoints or test connections.")
    st.stop()

st.subheader("Test a connection")
test_id = st.selectbox("Endpoint", list(endpoints), format_func=lambda i: endpoints[i].name, key="settings_test_id")
if st.button("Test connection", key="settings_test"):
    endpoint = endpoints[test_id]
    with st.spinner(f"Asking {endpoint.name}…"):
        outcome = check_connection(endpoint)
    if outcome.status == Status.OK:
        st.success(f"Connected: {ui.inline_text(endpoint.name)} answered in {outcome.latency_ms / 1000:.2f} s.")
        ui.render_text(outcome.text)
    else:
        st.error(ui.md(outcome.error_message or outcome.status))

st.subheader("Add or edit an endpoint")
st.caption(
    f"Saved to your endpoints file, {ui.inline_text(str(user_endpoints_path()))}, which is "
    "rewritten whole (its comments are not kept). Give the *name* of the environment variable that "
    "holds the key; the key itself is never stored."
)
choice = st.selectbox(
    "Start from",
    ["(new endpoint)", *endpoints],
    key="settings_edit_choice",
    format_func=lambda i: i if i == "(new endpoint)" else endpoints[i].name,
)
base = endpoints.get(choice)
# form widgets are keyed per starting point, so picking another endpoint refills them
form_key = f"settings_form_{choice}"
with st.form("endpoint_form"):
    endpoint_id = st.text_input(
        "Id", value=base.id if base else "", help="Letters, digits, - _ . :", key=f"{form_key}_id"
    )
    name = st.text_input("Display name", value=base.name if base else "", key=f"{form_key}_name")
    base_url = st.text_input(
        "Base URL", value=base.base_url if base else "http://127.0.0.1:8000/v1", key=f"{form_key}_base_url"
    )
    model = st.text_input("Model name", value=base.model if base else "", key=f"{form_key}_model")
    key_env = st.text_input(
        "Key variable name",
        value=base.key_env if base else "",
        help="e.g. DEEPSEEK_API_KEY; leave empty for local servers",
        key=f"{form_key}_key_env",
    )
    kind = st.selectbox(
        "Kind",
        ["hosted", "local", "embedded"],
        index=["hosted", "local", "embedded"].index(base.kind) if base else 1,  # the new one's URL is local
        help="hosted: a provider's API (needs a key); local: a server you run (Ollama, vLLM, llama.cpp); "
        'embedded: the built-in model (its Base URL is "embedded")',
    )
    q = base.quirks if base else None
    c1, c2, c3 = st.columns(3)
    system_role = c1.selectbox(
        "System role",
        ["system", "developer", "user"],
        index=["system", "developer", "user"].index(q.system_role) if q else 0,
    )
    token_param = c2.selectbox(
        "Max tokens parameter",
        ["max_tokens", "max_completion_tokens"],
        index=["max_tokens", "max_completion_tokens"].index(q.max_tokens_param) if q else 0,
    )
    reasoning_field = c3.text_input("Reasoning field", value=(q.reasoning_field or "") if q else "")
    no_temperature = st.checkbox("No temperature", value=q.no_temperature if q else False)
    think_tags = st.checkbox("Reasoning in <think> tags", value=q.think_tags if q else False)
    submitted = st.form_submit_button("Save endpoint", key="settings_save")
if submitted:
    quirks = {
        "system_role": system_role,
        "max_tokens_param": token_param,
        "no_temperature": no_temperature,
        "think_tags": think_tags,
    }
    if reasoning_field.strip():
        quirks["reasoning_field"] = reasoning_field.strip()
    entry = {
        "name": name.strip(),
        "base_url": base_url.strip(),
        "model": model.strip(),
        "key_env": key_env.strip(),
        "kind": kind,
        "quirks": quirks,
    }
    if base:
        entry.update(
            {
                k: v
                for k, v in (
                    ("params", base.params),
                    ("prices", base.prices),
                    ("system_prompt", base.system_prompt),
                    ("description", base.description),
                )
                if v
            }
        )
    st.session_state.pop(PENDING, None)
    try:
        if not endpoint_id.strip():
            raise EndpointConfigError("the id is empty")
        new_id = endpoint_id.strip()
        if new_id != (base.id if base else None) and new_id in endpoint_ids():
            # it became an override of that entry (a disabled one too), keeping its other fields
            taken = f"the endpoint {endpoints[new_id].name!r}" if new_id in endpoints else "a disabled endpoint"
            raise EndpointConfigError(
                f"the id '{new_id}' is taken by {taken}: pick it under Start from to change it, or give this "
                "one another id"
            )
        path = save_user_endpoint(endpoint_id.strip(), entry)
    except NeedsConfirmation as exc:
        st.session_state[PENDING] = (endpoint_id.strip(), entry, exc.destination)
    except EndpointConfigError as exc:
        not_saved(exc)
    else:
        ui.refresh_states()
        st.session_state[SAVED] = f"Saved '{endpoint_id.strip()}' to {path}."
        st.rerun()

if pending := st.session_state.get(PENDING):
    pending_id, pending_entry, destination = pending
    unencrypted = "over plain http" in destination.host
    st.warning(
        f"Saving '{ui.inline_text(pending_id)}' sends the key in **{ui.inline_text(destination.key_env)}** to "
        f"**{ui.inline_text(destination.host)}**. Anyone who runs that server can read the key"
        + (", and so can anyone on the network between you, as plain http is not encrypted" if unencrypted else "")
        + ". Save only if you trust it."
    )
    confirm_col, cancel_col = st.columns(2)
    if confirm_col.button(f"Send {destination.key_env} there and save", type="primary", key="settings_confirm_key"):
        st.session_state.pop(PENDING)
        try:
            path = save_user_endpoint(pending_id, pending_entry, confirm=destination)
        except EndpointConfigError as exc:
            not_saved(exc)
        else:
            ui.refresh_states()
            st.session_state[SAVED] = f"Saved '{pending_id}' to {path}."
            st.rerun()
    if cancel_col.button("Cancel", key="settings_cancel_key"):
        st.session_state.pop(PENDING)
        st.rerun()
