"""Suites: probe sets, background runs with live progress, and results with intervals."""

import pandas as pd
import streamlit as st

from db import config, repo
from db.engine import session_scope
from db.models import SuiteRun
from lib import ui
from lib.suites.definitions import SuiteError, ensure_builtin, find_suite, import_suite, parse_suite, prompt_dict
from lib.suites.results import compare_runs, results
from lib.suites.runner import (
    RunError,
    RunSpec,
    counts,
    create_or_resume,
    eta_seconds,
    request_cancel,
    start_in_background,
    worker_alive,
)

st.title("Probe suites")
ui.database_or_stop()
endpoints = ui.endpoints_or_stop()
with session_scope() as s:
    ensure_builtin(s)

tab_run, tab_results, tab_suites = st.tabs(["Run", "Results", "Suites"])

with tab_suites:
    upload = st.file_uploader("Import a suite (YAML or JSONL)", type=["yaml", "yml", "jsonl"], key="suite_upload")
    if upload is not None:
        try:
            suite_def = parse_suite(upload.getvalue().decode("utf-8", errors="replace"), upload.name)
            with session_scope() as s:
                _, created = import_suite(s, suite_def)
            st.success(
                f"{'Imported' if created else 'Already imported'} {suite_def.name} v{suite_def.version}: "
                f"{len(suite_def.prompts)} prompts."
            )
        except SuiteError as exc:
            st.error(f"{upload.name} has {len(exc.problems)} problem(s); nothing was imported.")
            st.code("\n".join(exc.problems), language=None)

with session_scope() as s:
    suite_names = repo.suite_names(s)

with tab_suites:
    shown = st.selectbox("Suite", suite_names, key="suite_show")
    with session_scope() as s:
        suite = find_suite(s, shown)
        prompts = [prompt_dict(p) for p in suite.prompts]
        st.caption(f"v{suite.version} · {len(prompts)} prompts · {suite.description}")
    st.dataframe(pd.DataFrame(prompts), hide_index=True, width="stretch")

with tab_run:
    with st.form("suite_run_form"):
        name = st.selectbox("Suite", suite_names, key="run_suite")
        chosen = st.multiselect(
            "Models",
            list(endpoints),
            default=[i for i in ("smollm2", "smollm2-guarded") if i in endpoints],
            format_func=lambda i: endpoints[i].name,
            key="run_models",
        )
        c1, c2, c3, c4 = st.columns(4)
        samples = c1.number_input("Samples per prompt", 1, 50, 1, key="run_samples")
        concurrency = c2.number_input(
            "Concurrency per model",
            1,
            32,
            4,
            key="run_concurrency",
            help="The embedded model always runs one request at a time.",
        )
        temperature = c3.number_input("Temperature", 0.0, 2.0, 0.7, 0.1, key="run_temperature")
        max_tokens = c4.number_input("Max tokens", 16, 8000, 256, 16, key="run_max_tokens")
        c5, c6, c7 = st.columns(3)
        language = c5.selectbox("Language", ["both", "en", "zh"], key="run_language")
        topic = c6.text_input("Topic (optional)", key="run_topic")
        limit = c7.number_input("First K prompts (0 = all)", 0, 10000, 0, key="run_limit")
        fresh = st.checkbox("Start a fresh run even if the same one exists", key="run_new")
        start = st.form_submit_button("Run in the background", type="primary")
    if start:
        spec = RunSpec(
            suite=name,
            endpoints=chosen,
            samples=int(samples),
            temperature=float(temperature),
            max_tokens=int(max_tokens),
            language=None if language == "both" else language,
            topic=topic.strip() or None,
            limit=int(limit) or None,
            concurrency=int(concurrency),
        )
        try:
            with session_scope() as s:
                run, resumed = create_or_resume(s, spec, endpoints, new=fresh)
                state, run_id = counts(s, run), run.id
        except RunError as exc:
            st.error(str(exc).capitalize())
        else:
            if resumed and sum(state["done"].values()) >= state["total"]:
                st.info(
                    f"Run #{run_id} with these settings is already complete; nothing was added. "
                    "Tick 'fresh run' to run it again."
                )
            else:
                start_in_background(run_id, config.data_dir())
                st.success(f"{'Resumed' if resumed else 'Started'} run #{run_id} in the background.")

    @st.fragment(run_every=2)
    def live_runs() -> None:
        """Progress of every run, refreshed every two seconds."""
        with session_scope() as s:
            runs = repo.list_suite_runs(s)[:10]
            states = {r["id"]: counts(s, s.get(SuiteRun, r["id"])) for r in runs}
            alive = {r["id"]: worker_alive(s.get(SuiteRun, r["id"])) for r in runs}
            etas = {
                r["id"]: eta_seconds(
                    s.get(SuiteRun, r["id"]), sum(states[r["id"]]["done"].values()), states[r["id"]]["total"]
                )
                for r in runs
            }
        if not runs:
            st.caption("No runs yet.")
        for r in runs:
            state = states[r["id"]]
            done = sum(state["done"].values())
            status = r["status"] if alive[r["id"]] or r["status"] not in ("running", "cancelling") else "stopped"
            with st.container(border=True, key=f"run_{r['id']}"):
                eta = f" · about {etas[r['id']]:.0f} s left" if etas[r["id"]] else ""
                st.markdown(f"**Run #{r['id']}** · {r['suite']} · {status} · {done}/{state['total']}{eta}")
                st.progress(done / state["total"] if state["total"] else 0.0)
                st.caption(
                    " · ".join(
                        f"{e}: {state['done'].get(e, 0)} done"
                        + (f", {state['failed'][e]} failed" if state["failed"].get(e) else "")
                        for e in r["endpoints"]
                    )
                )
                left, right = st.columns(2)
                if status in ("running", "pending") and left.button("Cancel", key=f"cancel_{r['id']}"):
                    request_cancel(r["id"])
                if (
                    status in ("incomplete", "cancelled", "stopped")
                    and done < state["total"]
                    and right.button("Resume (retries failures)", key=f"resume_{r['id']}")
                ):
                    start_in_background(r["id"], config.data_dir())

    live_runs()

with tab_results:
    with session_scope() as s:
        runs = repo.list_suite_runs(s)
    if not runs:
        st.info("No runs yet: start one on the Run tab.")
    else:
        labels = {r["id"]: f"#{r['id']} · {r['suite']} · {', '.join(r['endpoints'])}" for r in runs}
        run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="results_run")
        data = results(run_id)
        if data.get("error"):
            st.info(data["error"].capitalize() + ".")
        else:
            if st.button("Open in Analysis", key="results_analysis"):
                st.session_state["analysis_suite_run"] = run_id
                st.switch_page("views/analysis.py")
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "model": r["model"],
                            "topic": r["topic"],
                            "n": r["n"],
                            "not answered": f"{r['not_answered']['rate']:.0%} [{r['not_answered']['low']:.0%}–"
                            f"{r['not_answered']['high']:.0%}]",
                            "refused": f"{r['refused']['rate']:.0%}",
                            "deflected": f"{r['deflected']['rate']:.0%}",
                            "blocked": f"{r['blocked']['rate']:.0%}",
                        }
                        for r in data["rates"]
                    ]
                ),
                hide_index=True,
                width="stretch",
            )
            st.markdown(
                "**Probe vs control** (how much more a model avoids the sensitive question than its neutral twin)"
            )
            st.dataframe(
                pd.DataFrame(
                    [
                        {
                            "model": a["model"],
                            "topic": a["topic"],
                            "probes": f"{a['probe']['rate']:.0%} (n={a['probe']['n']})" if a["probe"]["n"] else "–",
                            "controls": f"{a['control']['rate']:.0%} (n={a['control']['n']})"
                            if a["control"]["n"]
                            else "–",
                            "asymmetry": None if a["asymmetry"] is None else round(a["asymmetry"], 3),
                        }
                        for a in data["asymmetry"]
                    ]
                ),
                hide_index=True,
                width="stretch",
            )
            if data["language_gap"]:
                st.markdown("**English vs Chinese** (twin prompts)")
                st.dataframe(
                    pd.DataFrame(
                        [
                            {
                                "model": g["model"],
                                "en": f"{g['en']['rate']:.0%}",
                                "zh": f"{g['zh']['rate']:.0%}",
                                "gap": round(g["gap"], 3),
                            }
                            for g in data["language_gap"]
                        ]
                    ),
                    hide_index=True,
                )
            others = [r for r in labels if r != run_id]
            if others:
                other = st.selectbox(
                    "Compare with run",
                    [None, *others],
                    key="results_compare",
                    format_func=lambda i: "—" if i is None else labels[i],
                )
                if other:
                    comparison = compare_runs(run_id, other)
                    st.dataframe(
                        pd.DataFrame(
                            [
                                {
                                    "model": c["model"],
                                    "topic": c["topic"],
                                    f"#{run_id}": "–" if not c["a"] else f"{c['a']['rate']:.0%} (n={c['a']['n']})",
                                    f"#{other}": "–" if not c["b"] else f"{c['b']['rate']:.0%} (n={c['b']['n']})",
                                    "change": None if c["change"] is None else round(c["change"], 3),
                                }
                                for c in comparison["rows"]
                            ]
                        ),
                        hide_index=True,
                        width="stretch",
                    )
