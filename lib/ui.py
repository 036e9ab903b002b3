"""Shared Streamlit rendering: the sidebar, one answer column, label badges. The only lib
module that imports streamlit; pages stay thin by calling these.

The one render path for untrusted text: every answer, reasoning, prompt and provider message a
page shows goes through `render_text` (or `md` where an element takes Markdown), which renders
it with lib.present.safe_markdown: no remote images, no javascript:/data: links, raw HTML as
text, and `$` as a dollar sign unless the user turned maths on in Settings. One-line data (a model
name, a topic, a prompt in a caption) goes through `inline_text`: shown as written, never a link."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from db.vocab import Label, LabelSource, Status
from lib import imports, storage
from lib.conversations import ResponseView, rate_answer, save_human_label, takes_human_label
from lib.present import LABEL_COLOURS, format_metrics, literal_markdown, plural, safe_markdown
from lib.providers.endpoints import EndpointConfigError, endpoint_state, forget_probes, load_endpoints
from lib.safety import clean_text, fitted_key, page_text

# session-state keys shared between pages
CONVERSATION = "compare_conversation_id"
COMPARE_MODELS = "compare_models"  # Compare's model pick; History sets it to open a conversation
COMPARE_SYSTEM = "compare_system"  # Compare's system prompt; History sets it to continue a conversation
ARENA_BATTLE = "arena_battle"
ANALYSIS_RUN = "analysis_suite_run"  # set by the suites page to open a run in Analysis
MATHS = "render_maths"  # the Settings toggle: render $...$ in answers as maths
EXAMPLE_LOADED = "example_loaded"  # what loading the example study did, shown once on Analysis
LABELS = Label.ALL


def maths_on() -> bool:
    """Whether the user turned maths rendering on (Settings); off by default."""
    return bool(st.session_state.get(MATHS, False))


def md(text: str | None) -> str:
    """Untrusted text as Markdown safe for any element that renders Markdown (captions, alerts)."""
    return safe_markdown(text, maths_on())


def inline_text(text: str | None) -> str:
    """Short untrusted text (a title, a name, a prompt in a caption) shown as written inside Markdown:
    no syntax, no link (a bare URL or e-mail address stays text), no icon, emoji or arrow."""
    return literal_markdown(clean_text(text))


def render_text(text: str | None) -> None:
    """Show an answer, a reasoning or a prompt: the one render function every page uses."""
    st.markdown(md(text))


def plain_text(text: str | None) -> None:
    """Untrusted text shown as preformatted plain text (no Markdown), in the order it was written."""
    st.text(page_text(text))


def table(data, **options):
    """A table (`st.dataframe`; `data` a DataFrame or what one is built from, `options` its) whose
    text cells, column names included, show their characters in the order they were written
    (`lib.safety.page_text`): the one path every page's table of untrusted text takes."""
    frame = (data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)).copy()
    frame.columns = [page_text(c) if isinstance(c, str) else c for c in frame.columns]
    for column in frame.columns:
        if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(lambda v: page_text(v) if isinstance(v, str) else v)
    return st.dataframe(frame, **options)


# the pages that need the endpoints and say why they cannot be read (endpoints_or_stop): the
# sidebar does not point elsewhere on these
ENDPOINT_PAGES = ("Compare", "Arena", "Suites", "Settings")


def endpoints_or_stop():
    """The configured endpoints, or a clear error on the page and a stop."""
    try:
        return load_endpoints()
    except EndpointConfigError as exc:
        if len(exc.problems) == 1:
            st.error(
                f"The endpoints file cannot be read: {inline_text(exc.problems[0])}. "
                "Fix the file and reload the page; nothing else needs restarting."
            )
        else:
            listed = "\n".join(f"- {inline_text(p)}" for p in exc.problems[:50])
            more = f"\n- … and {len(exc.problems) - 50} more" if len(exc.problems) > 50 else ""
            st.error(
                f"The endpoints files cannot be read ({len(exc.problems)} problems):\n\n{listed}{more}\n\n"
                "Fix them and reload the page; nothing else needs restarting."
            )
        st.stop()


def database_or_stop() -> None:
    """Open (and migrate) the database, or explain why not and stop."""
    try:
        storage.open_database()
    except storage.DatabaseUnavailable as exc:
        why = inline_text(str(exc))
        st.error(f"The database cannot be opened: {why}. Set PARALLAX_DATABASE_URL to a writable place.")
        st.stop()


@st.cache_data(ttl=10, show_spinner=False)
def _states(ids: tuple[str, ...]) -> dict[str, tuple[bool, str, str]]:
    endpoints = load_endpoints()
    return {i: tuple(vars(endpoint_state(endpoints[i])).values()) for i in ids if i in endpoints}


def drop_unknown(key: str, options) -> None:
    """Before a kept widget is drawn, forget what is no longer an option (an endpoint, a run or
    a suite that went away since its value was kept): a multiselect keeps its other choices, a
    selectbox falls back to its default."""
    if key not in st.session_state:
        return
    value = st.session_state[key]
    if isinstance(value, list):
        if any(v not in options for v in value):
            st.session_state[key] = [v for v in value if v in options]
    elif value not in options:
        del st.session_state[key]


def refresh_states() -> None:
    """Forget cached endpoint states (after the user edits the endpoints)."""
    _states.clear()
    forget_probes()


def sidebar(page: str = "") -> None:
    """Database in use and the state of every endpoint; `page` is the title of the page shown."""
    with st.sidebar:
        st.caption(f"Database: `{storage.database_label()}`")
        try:
            endpoints = load_endpoints()
        except EndpointConfigError:
            # a page that needs the endpoints says why (endpoints_or_stop); elsewhere the sidebar
            # points there, so the reason is shown once
            if page not in ENDPOINT_PAGES:
                st.error("The endpoints file cannot be read: the Settings page says why.")
            return
        with st.container(key="sidebar_endpoints"), st.expander("Endpoints", expanded=False):
            for endpoint_id, (ready, status, detail) in _states(tuple(endpoints)).items():
                icon = ":green[●]" if ready else ":gray[○]"
                st.markdown(f"{icon} **{inline_text(endpoints[endpoint_id].name)}** — {inline_text(status)}")
                if detail and not ready:
                    st.caption(inline_text(detail))


def render_label(response: ResponseView, key_prefix: str, correctable: bool = True) -> None:
    """The response's effective label as a badge, with a one-click correction when `correctable`."""
    label = response.label
    cols = st.columns([3, 2])
    with cols[0]:
        if label is not None:
            suffix = " ✓" if label.source == LabelSource.HUMAN else f" {label.confidence:.0%}"
            if Label.is_guess(label.rule):  # the detector reads English and Chinese only
                suffix += " · other language: a guess"
            st.badge(f"{label.label}{suffix}", color=LABEL_COLOURS.get(label.label, "gray"))
    if not correctable:
        return
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
    return md(message or "The request failed.")


def _note(note: str | None, anonymous: bool) -> str | None:
    if note and anonymous:  # "spent its budget on reasoning" would say which kind of model it is
        return "This answer was cut off at the token limit."
    return md(note) if note else None


def render_response(
    response: ResponseView,
    *,
    title: str | None = None,
    show_label: bool = True,
    key_prefix: str = "r",
    anonymous: bool = False,
) -> None:
    """One stored answer: title, safe Markdown text, reasoning, problem, budget note, metrics.

    `anonymous` (a blind battle before the vote) hides anything that could name the model: the
    reasoning, error details, cost, speed and whether tokens were counted locally."""
    if title:
        st.markdown(f"**{inline_text(title)}**")
    if response.reasoning and not anonymous:
        with st.expander("Reasoning", expanded=False):
            render_text(response.reasoning)
    if response.text:
        render_text(response.text)
    if response.status == Status.BLOCKED:
        st.warning("Blocked by the provider. " + ("" if anonymous else md(response.error_message or "")))
    elif response.status == Status.ERROR:
        st.error(_problem(response.status, response.error_kind, response.error_message, anonymous))
    elif response.status == Status.INTERRUPTED:
        st.info("Interrupted; the text streamed so far is kept.")
    if note := _note(response.note, anonymous):
        st.warning(note)
    if not anonymous:
        st.caption(
            format_metrics(
                response.ttft_ms,
                response.latency_ms,
                response.output_tokens,
                response.tokens_counted,
                response.cost_usd,
            )
        )
    if show_label:  # an answer that did not finish, or has no text, shows its badge only
        finished = takes_human_label(response.status, response.text)
        render_label(response, key_prefix, correctable=finished)
        if finished:
            render_thumb(response, key_prefix)


def render_thumb(response: ResponseView, key_prefix: str) -> None:
    """Thumbs up/down for one answer (unpaired preference data for KTO exports)."""
    value = st.feedback("thumbs", key=f"{key_prefix}_thumb_{response.id}")
    saved_key = f"thumb_saved_{response.id}"
    if value is not None and st.session_state.get(saved_key) != value:
        rate_answer(response.id, up=bool(value), voter=current_voter())
        st.session_state[saved_key] = value


def live_column(placeholder, title: str, anonymous: bool = False):
    """A callback that repaints one column's placeholder while its answer streams.

    A repaint parses the answer's Markdown (safe_markdown), which grows with the answer: after a
    repaint that took t seconds the next waits at least 4t, so rendering a long answer never takes
    more than a fifth of the time that streams the other columns. The final repaint always runs."""
    next_at = [0.0]

    def update(_target, state) -> None:
        started = time.monotonic()
        if not state.done and started < next_at[0]:
            return
        _paint(state)
        next_at[0] = time.monotonic() + 4 * (time.monotonic() - started)

    def _paint(state) -> None:
        with placeholder.container():
            st.markdown(f"**{inline_text(title)}**")
            if state.reasoning and not anonymous:
                st.caption(f"Reasoning… {len(state.reasoning)} characters")
            render_text(state.text or "…")
            if state.done and state.status != Status.OK:
                st.error(_problem(state.status, state.error_kind, state.error_message, anonymous))
            elif state.done and (note := _note(state.note, anonymous)):
                st.warning(note)

    return update


EXAMPLE_COMPLETE = "example_complete"  # this session found the example study loaded whole, or not loaded


def offer_example(where: str) -> None:
    """While the database holds no answer: say what Parallax shows and offer the example study;
    while the example study is loaded only part way (its load stopped when the page was left or
    closed), say so and offer to finish it.

    The button (key `load_example_WHERE`) runs the same import action as `cli.py import
    --example` (which also finishes a load stopped part way), then opens the Analysis page."""
    if imports.has_answers():
        if st.session_state.get(EXAMPLE_COMPLETE):
            return
        state = imports.example_state()  # once a session: the query reads every imported conversation
        if state != "unfinished":
            st.session_state[EXAMPLE_COMPLETE] = True
            return
        intro = (
            "**The example study was loaded only part way** (the page was left or closed while it loaded): some "
            "of its answers have no label of the detector yet, or its precomputed embeddings are not all stored, "
            "so Analysis would be incomplete or slow. Finish loading it (nothing is added twice)."
        )
        label = "Finish loading the example study"
    else:
        intro = (
            "**No answers yet — no key needed to see what Parallax is for.** Load the example study: "
            "real answers of 37 models (DeepSeek, Qwen, GLM, Kimi, GPT, Claude, Llama, Grok…) to 20 "
            "China-critical requests, each asked in English and in Chinese, with two judges' labels "
            "(SpeechMap, Apache-2.0). The Analysis page then shows which models refuse or deflect, "
            "and how they differ between the two languages. Stay on this page until it has loaded "
            "(a few seconds)."
        )
        label = "Load the example study"
    with st.container(border=True, key=f"example_{where}"):
        st.markdown(intro)
        if not st.button(label, key=f"load_example_{where}", type="primary", icon=":material/download:"):
            return
        bar = st.progress(0.0, text="Reading the example study…")

        def show(phase: str, done: int, total: int) -> None:
            bar.progress(done / total if total else 0.0, text=f"{phase.capitalize()}… {done}/{total or '?'}")

        try:
            result = imports.load_example(progress=show)
        except imports.ImportProblems as exc:
            st.error(f"The example study cannot be loaded: {inline_text(str(exc))}")
            return
    agreement = result.agreement
    finished = [
        plural(result.detector_labels, "answer") + " labelled" if result.detector_labels else "",
        plural(result.vectors_added, "embedding") + " stored" if result.vectors_added else "",
    ]
    st.session_state[EXAMPLE_LOADED] = (
        f"Finished loading the example study: {' and '.join(f for f in finished if f)} (its load had stopped part way)."
        if result.added_nothing and any(finished)
        else "The example study was already loaded."
        if result.added_nothing
        else f"Loaded the example study: {result.answers_added:,} answers to {result.conversations_added} prompts "
        f"(each request in English and Chinese) in {result.seconds:.0f} s."
        + (
            f" The detector agrees with the judges' labels on {agreement.rate:.1%} of them (it was trained on "
            "these answers, so this is no test of it)."
            if agreement and agreement.rate is not None
            else ""
        )
    )
    st.switch_page("views/analysis.py")


def example_loaded_note() -> None:
    """Say once what loading the example study did (on the page it opens)."""
    note = st.session_state.pop(EXAMPLE_LOADED, None)
    if note:
        st.success(note, icon=":material/check_circle:")


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


MAX_VOTER_CHARS = 100  # the width of vote.voter and thumb.voter


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
    st.session_state[VOTER] = fitted_key(f"oidc:{identity}", MAX_VOTER_CHARS)  # vote.voter: a key, never cut
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
