"""Suites: probe sets, background runs with live progress, and results with intervals."""

import pandas as pd
import streamlit as st

from lib import ui
from lib.analysis.views import data_version
from lib.present import plural
from lib.providers.endpoints import MAX_TEMPERATURE
from lib.safety import page_text
from lib.suites.definitions import SuiteError, import_bytes, show_suite, suite_choices
from lib.suites.results import (
    UnknownRun,
    agreement_table,
    asymmetry_table,
    card_line,
    card_table,
    comparison_table,
    confusion_table,
    gap_table,
    left_out_table,
    matrices_used,
    rates_table,
    results,
)
from lib.suites.runner import (
    RunBusy,
    RunError,
    RunSpec,
    create_run,
    request_cancel,
    run_states,
    start_in_background,
)
from lib.vocab import RunStatus

st.title("Probe suites")
ui.database_or_stop()
endpoints = ui.endpoints_or_stop()

tab_run, tab_results, tab_suites = st.tabs(["Run", "Results", "Suites"])

with tab_suites:
    asked = st.text_input(
        "Version to import under (optional)",
        key="suite_upload_version",
        help="Where the file gives none: a .txt or .csv list is version 1 unless you give another here "
        "(import a changed list under a new version).",
    )
    upload = st.file_uploader(
        "Import a suite (YAML or JSONL, or a prompt list: .txt one per line, .csv with a prompt column)",
        type=["yaml", "yml", "jsonl", "txt", "csv"],
        key="suite_upload",
    )
    if upload is not None:
        try:
            imported = import_bytes(upload.getvalue(), upload.name, asked.strip() or None)
        except SuiteError as exc:
            problems = plural(len(exc.problems), "problem")
            st.error(f"{ui.inline_text(upload.name)} has {problems}; nothing was imported.")
            st.code(page_text("\n".join(exc.problems)), language=None)
        else:
            for warning in imported.warnings:
                st.warning(ui.inline_text(warning))
            st.success(
                f"{'Imported' if imported.created else 'Already imported'} {imported.name} v{imported.version}: "
                f"{plural(imported.prompts, 'prompt')}."
            )

choices = suite_choices()  # each suite's newest version by its name, older ones as NAME@VERSION

with tab_suites:
    ui.drop_unknown("suite_show", choices)
    shown = show_suite(
        st.selectbox("Suite", list(choices), format_func=choices.get, key="suite_show", persist_state="session")
    )
    st.caption(
        " · ".join(
            part
            for part in (
                f"v{ui.inline_text(shown.version)}",
                plural(len(shown.prompts), "prompt"),
                ui.inline_text(shown.description) if shown.description else "",
            )
            if part
        )
    )
    ui.table(pd.DataFrame(shown.prompts).fillna(""), hide_index=True, width="stretch")  # no "None" twins

with tab_run:
    ui.drop_unknown("run_models", endpoints)
    ui.drop_unknown("run_suite", choices)
    with st.form("suite_run_form"):
        name = st.selectbox("Suite", list(choices), format_func=choices.get, key="run_suite", persist_state="session")
        chosen = st.multiselect(
            "Models",
            list(endpoints),
            default=[i for i in ("smollm2", "smollm2-guarded") if i in endpoints],
            format_func=lambda i: endpoints[i].name,
            key="run_models",
            persist_state="session",
        )
        c1, c2, c3, c4 = st.columns(4)
        samples = c1.number_input("Samples per prompt", 1, 50, 1, key="run_samples", persist_state="session")
        concurrency = c2.number_input(
            "Concurrency per model",
            1,
            32,
            4,
            key="run_concurrency",
            persist_state="session",
            help="The embedded model runs at most 2 requests at once for all its endpoints (1 on the fallback server).",
        )
        own = "Empty: each model's own (its endpoint's params, else the provider's default), as `suite run` does."
        temperature = c3.number_input(
            "Temperature",
            0.0,
            MAX_TEMPERATURE,
            None,
            0.1,
            key="run_temperature",
            placeholder="model's own",
            help=own,
            persist_state="session",
        )
        max_tokens = c4.number_input(
            "Max tokens",
            16,
            32000,
            None,
            16,
            key="run_max_tokens",
            placeholder="model's own",
            help=own,
            persist_state="session",
        )
        c5, c6, c7 = st.columns(3)
        language = c5.selectbox("Language", ["both", "en", "zh"], key="run_language", persist_state="session")
        topic = c6.text_input("Topic (optional)", key="run_topic", persist_state="session")
        limit = c7.number_input("First K prompts (0 = all)", 0, 10000, 0, key="run_limit", persist_state="session")
        fresh = st.checkbox("Start a fresh run even if the same one exists", key="run_new")
        start = st.form_submit_button("Run in the background", type="primary", key="run_submit")
    if start:
        spec = RunSpec(
            suite=name,
            endpoints=chosen,
            samples=int(samples),
            temperature=None if temperature is None else float(temperature),
            max_tokens=None if max_tokens is None else int(max_tokens),
            language=None if language == "both" else language,
            topic=topic.strip() or None,
            limit=int(limit) or None,
            concurrency=int(concurrency),
        )
        try:
            started = create_run(spec, endpoints, new=fresh)
        except RunError as exc:
            st.error(ui.inline_text(str(exc).capitalize()))
        else:
            if started.already_complete:
                st.info(
                    f"Run #{started.run_id} with these settings is already complete; nothing was added. "
                    "Tick 'fresh run' to run it again."
                )
            else:
                try:
                    start_in_background(started.run_id)
                except RunBusy as exc:
                    who = ui.inline_text(exc.worker)
                    st.info(f"Run #{started.run_id} is already running ({who}); its progress is below.")
                except RunError as exc:
                    st.error(ui.inline_text(str(exc).capitalize()))
                else:
                    verb = "Resumed" if started.resumed else "Started"
                    st.success(f"{verb} run #{started.run_id} in the background.")

    @st.fragment(run_every=2)
    def live_runs() -> None:
        """Progress of the newest runs, refreshed every two seconds."""
        runs = run_states(limit=10)
        seen = st.session_state.setdefault("suites_seen_status", {})
        ended = [r.id for r in runs if r.status in RunStatus.FINISHED and seen.get(r.id) not in (None, r.status)]
        seen.update({r.id: r.status for r in runs})
        if ended:  # a run just ended: the whole page again, so the Results tab shows its answers
            st.rerun(scope="app")
        if not runs:
            st.caption("No runs yet.")
        for r in runs:
            with st.container(border=True, key=f"run_{r.id}"):
                eta = f" · about {r.eta_s:.0f} s left" if r.eta_s else ""
                st.markdown(
                    f"**Run #{r.id}** · {ui.inline_text(r.suite)} v{ui.inline_text(r.suite_version)} · {r.status} · "
                    f"{r.completed}/{r.total}{eta}"
                )
                st.progress(r.completed / r.total if r.total else 0.0)
                st.caption(ui.inline_text(r.settings[:1].upper() + r.settings[1:]))
                if r.worker:
                    st.caption(f"Worker: {ui.inline_text(r.worker)}")
                if r.error:
                    st.error(f"Failed: {ui.inline_text(r.error)}")
                st.caption(
                    " · ".join(
                        f"{e}: {r.done.get(e, 0)} done" + (f", {r.failed[e]} failed" if r.failed.get(e) else "")
                        for e in r.endpoints
                    )
                )
                left, right = st.columns(2)
                if r.status in (RunStatus.RUNNING, RunStatus.PENDING) and left.button("Cancel", key=f"cancel_{r.id}"):
                    request_cancel(r.id)
                if r.resumable and right.button("Resume (retries failures)", key=f"resume_{r.id}"):
                    try:
                        start_in_background(r.id)
                    except RunBusy as exc:
                        st.info(ui.inline_text(str(exc).capitalize()))
                    except RunError as exc:
                        st.error(ui.inline_text(str(exc).capitalize()))

    live_runs()


@st.cache_data(show_spinner="Computing results…", max_entries=16)
def cached_results(run_id: int, other: int | None, version: tuple):
    """One run's results per comparison and data version (corrected rates take a moment)."""
    return results(run_id, compare_with=other)


with tab_results:
    runs = run_states()
    if not runs:
        st.info("No runs yet: start one on the Run tab.")
    else:
        labels = {r.id: f"#{r.id} · {r.suite} v{r.suite_version} · {', '.join(r.endpoints)}" for r in runs}
        ui.drop_unknown("results_run", labels)
        run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="results_run", persist_state="session")
        others = [r for r in labels if r != run_id]
        ui.drop_unknown("results_compare", [None, *others])
        other = (
            st.selectbox(
                "Compare with run",
                [None, *others],
                key="results_compare",
                persist_state="session",
                format_func=lambda i: "—" if i is None else labels[i],
            )
            if others
            else None
        )
        try:
            data = cached_results(run_id, other, data_version())
        except UnknownRun as exc:
            st.info(ui.inline_text(str(exc).capitalize()) + ".")
            st.stop()
        if data.error:
            st.info(ui.inline_text(data.error.capitalize()) + ".")
        else:
            if st.button("Open in Analysis", key="results_analysis"):
                st.session_state[ui.ANALYSIS_RUN] = run_id
                st.switch_page("views/analysis.py")
            if data.note:
                st.info(data.note.capitalize() + ".")
            else:
                st.caption(
                    "Not answered = refused + deflected, over finished answers labelled answered/refused/deflected. "
                    "Raw: as labelled (Wilson 95%). Corrected: for the detector's measured errors per language "
                    "(bootstrap 95%); human labels are taken as true. " + card_line(data)
                )
                ui.table(rates_table(data), hide_index=True, width="stretch")
                st.markdown(
                    "**Probe vs control** (how much more a model avoids the sensitive question than its neutral twin)"
                )
                ui.table(asymmetry_table(data), hide_index=True, width="stretch")
                if data.language_gap:
                    st.markdown("**English vs Chinese** (twin prompts)")
                    ui.table(gap_table(data), hide_index=True, width="stretch")
            st.markdown("**Left out of rates** (provider blocks, failed or interrupted, empty, unlabelled)")
            ui.table(left_out_table(data), hide_index=True, width="stretch")
            if data.agreement:
                st.markdown("**Agreement with other labels** (Cohen's kappa against the detector)")
                ui.table(agreement_table(data), hide_index=True)
            if card := data.detector_card:
                with st.expander(
                    f"Detector card: {card['detector']} (features v{card.get('features')}), measured {card['measured']}"
                ):
                    st.caption(data.detector_card["method"])
                    ui.table(card_table(data), hide_index=True, width="stretch")
                    for lang, used in matrices_used(data).items():
                        st.markdown(
                            f"**{lang}** corrected with `{used['measured_on']}` (n={used['n']}): out-of-fold counts"
                        )
                        ui.table(confusion_table(used["confusion"], "true"), hide_index=True)
            if data.comparison:
                ui.table(comparison_table(data), hide_index=True, width="stretch")
