"""Shared Streamlit rendering: the sidebar, one answer column, label badges. The only lib
module that imports streamlit; pages stay thin by calling these."""

from __future__ import annotations

import streamlit as st

from db.vocab import Label, LabelSource, Status
from lib import storage
from lib.conversations import ResponseView, rate_answer, save_human_label
from lib.present import LABEL_COLOURS, format_metrics
from lib.providers.endpoints import EndpointConfigError, endpoint_state, load_endpoints

# session-state keys shared between pages
CONVERSATION = "compare_conversation_id"
SELECTED = "compare_selected_models"
ARENA_BATTLE = "arena_battle"
ANALYSIS_RUN = "analysis_suite_run"  # set by the suites page to open a run in Analysis
LABELS = Label.ALL


def endpoints_or_stop():
    """The configured endpoints, or a clear error on the page and a stop."""
    try:
        return load_endpoints()
    except EndpointConfigError as exc:
        st.error(f"The endpoints file cannot be read: {exc}")
        st.stop()


def database_or_stop() -> None:
    """Open (and migrate) the database, or explain why not and stop."""
    try:
        storage.open_database()
    except storage.DatabaseUnavailable as exc:
        st.error(f"The database cannot be opened: {exc}. Set PARALLAX_DATABASE_URL to a writable place.")
        st.stop()


@st.cache_data(ttl=10, show_spinner=False)
def _states(ids: tuple[str, ...]) -> dict[str, tuple[bool, str, str]]:
    endpoints = load_endpoints()
    return {i: tuple(vars(endpoint_state(endpoints[i])).values()) for i in ids if i in endpoints}


def refresh_states() -> None:
    """Forget cached endpoint states (after the user edits the endpoints)."""
    _states.clear()


def sidebar() -> None:
    """Database in use and the state of every endpoint."""
    with st.sidebar:
        st.caption(f"Database: `{storage.database_label()}`")
        try:
            endpoints = load_endpoints()
        except EndpointConfigError as exc:
            st.error(str(exc))
            return
        with st.expander("Endpoints", expanded=False):
            for endpoint_id, (ready, status, detail) in _states(tuple(endpoints)).items():
                icon = ":green[●]" if ready else ":gray[○]"
                st.markdown(f"{icon} **{endpoints[endpoint_id].name}** — {status}")
                if detail and not ready:
                    st.caption(detail)


def render_label(response: ResponseView, key_prefix: str) -> None:
    """The response's effective label as a badge, with a one-click correction."""
    label = response.label
    cols = st.columns([3, 2])
    with cols[0]:
        if label is not None:
            suffix = " ✓" if label.source == LabelSource.HUMAN else f" {label.confidence:.0%}"
            st.badge(f"{label.label}{suffix}", color=LABEL_COLOURS.get(label.label, "gray"))
    key = f"{key_prefix}_label_{response.id}"
    with cols[1], st.popover("Label"):
        # only a change made by the user stores a human label (never the preselected value)
        st.segmented_control(
            "Correct the label",
            LABELS,
            key=key,
            default=label.label if label and label.label in LABELS else None,
            on_change=_save_label,
            args=(response.id, key),
        )


def _save_label(response_id: int, key: str) -> None:
    choice = st.session_state.get(key)
    if choice:
        save_human_label(response_id, choice)


def _problem(status: str, error_kind: str | None, message: str | None, anonymous: bool) -> str:
    if anonymous:  # provider messages name hosts and models: keep them out of blind battles
        return f"This model's answer failed ({error_kind or status})."
    return message or "The request failed."


def render_response(
    response: ResponseView,
    *,
    title: str | None = None,
    show_label: bool = True,
    key_prefix: str = "r",
    anonymous: bool = False,
) -> None:
    """One stored answer: title, Markdown text (never raw HTML), reasoning, problem, metrics.

    `anonymous` hides anything that could name the model (error details, cost)."""
    if title:
        st.markdown(f"**{title}**")
    if response.reasoning:
        with st.expander("Reasoning", expanded=False):
            st.markdown(response.reasoning)
    if response.text:
        st.markdown(response.text)
    if response.status == Status.BLOCKED:
        st.warning("Blocked by the provider. " + ("" if anonymous else response.error_message or ""))
    elif response.status == Status.ERROR:
        st.error(_problem(response.status, response.error_kind, response.error_message, anonymous))
    elif response.status == Status.INTERRUPTED:
        st.info("Interrupted; the text streamed so far is kept.")
    st.caption(
        format_metrics(
            response.ttft_ms,
            response.latency_ms,
            response.output_tokens,
            response.tokens_counted,
            None if anonymous else response.cost_usd,
        )
    )
    if show_label:
        render_label(response, key_prefix)
        render_thumb(response, key_prefix)


def render_thumb(response: ResponseView, key_prefix: str) -> None:
    """Thumbs up/down for one answer (unpaired preference data for KTO exports)."""
    value = st.feedback("thumbs", key=f"{key_prefix}_thumb_{response.id}")
    saved_key = f"thumb_saved_{response.id}"
    if value is not None and st.session_state.get(saved_key) != value:
        rate_answer(response.id, up=bool(value), voter=current_voter())
        st.session_state[saved_key] = value


def live_column(placeholder, title: str, anonymous: bool = False):
    """A callback that repaints one column's placeholder while its answer streams."""

    def update(_target, state) -> None:
        with placeholder.container():
            st.markdown(f"**{title}**")
            if state.reasoning:
                st.caption(f"Reasoning… {len(state.reasoning)} characters")
            st.markdown(state.text or "…")
            if state.done and state.status != Status.OK:
                st.error(_problem(state.status, state.error_kind, state.error_message, anonymous))

    return update


# --- Access: who may use the app, who votes, who administers --------------------------------
# Local use (the app bound to 127.0.0.1, nothing configured) needs no sign-in: one voter,
# "local", who is also the admin. Bound to anything else, or with sign-in configured in
# .streamlit/secrets.toml, every session signs in first: through OpenID Connect (`st.login`,
# an [auth] section) or, where no identity provider is set up, a shared password ([parallax]
# password). Each signed-in person votes under their own id; only admins edit endpoints.
VOTER = "access_voter"
ADMIN = "access_admin"
LOCAL_VOTER = "local"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _secrets(section: str) -> dict:
    try:
        if not st.secrets.load_if_toml_exists():
            return {}
        value = st.secrets.get(section, {})
    except Exception:  # noqa: BLE001 - an unreadable secrets file configures nothing
        return {}
    return dict(value) if hasattr(value, "keys") else {}


def bind_address() -> str:
    """The address the server listens on; '' means every interface (Streamlit's default)."""
    return st.get_option("server.address") or ""


def is_exposed(address: str) -> bool:
    """True unless `address` is a loopback address (an empty one means every interface)."""
    return not (address in LOOPBACK or address.startswith("127."))


def current_voter() -> str:
    """The signed-in person's voter id ('local' when the app needs no sign-in)."""
    return st.session_state.get(VOTER, LOCAL_VOTER)


def is_admin() -> bool:
    """Whether this session may edit endpoints and test connections."""
    return bool(st.session_state.get(ADMIN, False))


def require_access() -> None:
    """Let this session through (setting its voter id and admin flag), or show a sign-in and stop."""
    settings, oidc = _secrets("parallax"), bool(_secrets("auth"))
    address = bind_address()
    if not (is_exposed(address) or oidc or settings.get("password")):
        st.session_state[VOTER], st.session_state[ADMIN] = LOCAL_VOTER, True
        return
    if oidc:
        _oidc_sign_in(settings)
    elif settings.get("password"):
        _password_sign_in(settings)
    else:
        st.error(
            f"Parallax is listening on {address or 'every network interface'} but no sign-in is set up, so it "
            "will not serve anyone. Configure OpenID Connect ([auth]) or a shared password ([parallax] password) "
            "in .streamlit/secrets.toml, or listen on 127.0.0.1 only (`make run` does by default)."
        )
        st.stop()


def _oidc_sign_in(settings: dict) -> None:
    provider = settings.get("oidc_provider") or None
    if not st.user.get("is_logged_in", False):
        st.title("Parallax")
        st.info("Sign in to use Parallax.")
        st.button("Sign in", key="access_login", on_click=st.login, args=(provider,) if provider else ())
        st.stop()
    identity = str(st.user.get("email") or st.user.get("sub") or "")
    st.session_state[VOTER] = f"oidc:{identity}"
    st.session_state[ADMIN] = identity in [str(a) for a in settings.get("admins", [])]
    with st.sidebar:
        st.caption(f"Signed in as {identity}" + (" (admin)" if is_admin() else ""))
        st.button("Sign out", key="access_logout", on_click=st.logout)


def _password_sign_in(settings: dict) -> None:
    import hmac
    import time

    if VOTER in st.session_state:
        with st.sidebar:
            st.caption(f"Signed in as {st.session_state[VOTER].split(':', 1)[-1]}" + (" (admin)" if is_admin() else ""))
            if st.button("Sign out", key="access_logout"):
                del st.session_state[VOTER], st.session_state[ADMIN]
                st.rerun()
        return
    st.title("Parallax")
    with st.form("access_form"):
        name = st.text_input("Your name (your votes are recorded under it)", key="access_name", max_chars=64)
        password = st.text_input("Team password", type="password", key="access_password")
        submitted = st.form_submit_button("Sign in", key="access_submit")
    if submitted:
        name = "".join(c for c in name.strip() if c.isprintable())
        admin_password = str(settings.get("admin_password") or "")
        is_admin_password = bool(admin_password) and hmac.compare_digest(password.encode(), admin_password.encode())
        if not name:
            st.error("Type your name first.")
        elif is_admin_password or hmac.compare_digest(password.encode(), str(settings["password"]).encode()):
            st.session_state[VOTER], st.session_state[ADMIN] = f"user:{name}", is_admin_password
            st.rerun()
        else:
            time.sleep(1.0)  # slows down guessing
            st.error("Wrong password.")
    st.stop()
