"""Analysis: where models diverge, what each one deflects, and which answers are canned templates."""

import pandas as pd
import streamlit as st

from lib import conversations, ui
from lib.analysis import charts, deflection
from lib.analysis.embeddings import embed_answers, embedder_for
from lib.analysis.views import analyze, data_version, scope_texts
from lib.filters import AnswerScope, answer_scope
from lib.present import plural
from lib.suites.runner import run_states

EMBEDDED = "analysis_embedded_scopes"  # (scope, data version) -> key of the embedder that embedded it

st.title("Analysis")
ui.database_or_stop()
ui.example_loaded_note()
ui.offer_example("analysis")

runs = run_states()
names = conversations.endpoint_names()
run_options = [0] + [r.id for r in runs]  # 0 = everything (None would read as "no choice")
run_labels = {0: "Everything"} | {r.id: f"Run #{r.id} · {r.suite} · {r.status}" for r in runs}
preset = st.session_state.pop(ui.ANALYSIS_RUN, None)
if preset in run_options:
    st.session_state["analysis_run"] = preset
ui.drop_unknown("analysis_models", names)
ui.drop_unknown("analysis_run", run_options)
cols = st.columns([2, 2, 1, 2])
run_id = cols[0].selectbox(
    "Scope", run_options, format_func=run_labels.get, key="analysis_run", persist_state="session"
)
models = cols[1].multiselect(
    "Models", sorted(names), format_func=lambda i: names.get(i, i), key="analysis_models", persist_state="session"
)
language = cols[2].selectbox("Language", ["any", "en", "zh"], key="analysis_language", persist_state="session")
dates = cols[3].date_input("Dates", value=(), key="analysis_dates", persist_state="session")
scope = answer_scope(
    suite_run_id=run_id or None,
    endpoint_ids=models,
    language=language,
    first=dates[0] if len(dates) > 0 else None,
    last=dates[1] if len(dates) > 1 else None,
)
method = st.radio(
    "Projection",
    ["pca", "tsne"],
    horizontal=True,
    key="analysis_method",
    persist_state="session",
    format_func={"pca": "PCA", "tsne": "t-SNE (slower)"}.get,
)


def embed_missing(version: tuple) -> str:
    """Compute embeddings not yet cached, with a progress bar, once per scope and data version
    (the analysis below is cached separately and finds every vector stored); returns the key of
    the embedder the scope's languages call for."""
    embedded = st.session_state.setdefault(EMBEDDED, {})
    if (scope.key(), version) in embedded:
        return embedded[(scope.key(), version)]
    texts = scope_texts(scope)
    embedder = embedder_for(texts)
    bar = None

    def show(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = st.progress(0.0, text=f"Embedding {total} answers with {embedder.name} on {embedder.device}…")
        bar.progress(done / total)

    embed_answers(texts, show)
    if bar is not None:
        bar.empty()
    embedded[(scope.key(), version)] = embedder.key
    return embedder.key


@st.cache_data(show_spinner="Analysing…", max_entries=16)
def cached_analysis(scope_key: tuple, method: str, embedder: str, version: tuple) -> dict:
    """One analysis per scope, projection, embedder and data version (the scope is rebuilt from
    its key, so the cache key is exactly what the result depends on)."""
    run, endpoint_ids, lang, since, until = scope_key
    return analyze(AnswerScope(run, list(endpoint_ids) or None, lang, since, until), method)


version = data_version()
embedder_key = embed_missing(version)
result = cached_analysis(scope.key(), method, embedder_key, version)

if result["n"] == 0:
    st.info("No answers in this scope yet: ask something on Compare, or run a probe suite.")
    st.stop()
if result.get("embedder_fallback"):
    st.warning(ui.inline_text(result["embedder_fallback"]))
st.caption(
    f"{plural(result['n'], 'answer')} · {plural(len(result['models']), 'model')} · "
    f"embedder {ui.inline_text(result['embedder'])}"
    + (f" ({ui.inline_text(result['embedder_note'])})" if result.get("embedder_note") else "")
)


def problem(view: dict) -> bool:
    """Show why a view cannot be drawn for this scope; True when it cannot."""
    if "error" in view:
        st.info(view["error"].capitalize() + ".")
        return True
    return False


tab_map, tab_clusters, tab_templates, tab_div, tab_defl = st.tabs(
    ["Map", "Clusters", "Canned templates", "Divergence", "Deflection"]
)
with tab_map:
    if not problem(result["map"]):
        colour = st.segmented_control(
            "Colour by", ["model", "cluster", "label"], default="model", key="analysis_colour", persist_state="session"
        )
        if result["map"]["shown"] < result["map"]["total"]:
            st.caption(f"Showing a sample of {result['map']['shown']:,} of {result['map']['total']:,} answers.")
        event = st.plotly_chart(
            charts.answer_map(result["map"]["points"], colour or "model"),
            key="analysis_map",
            on_select="rerun",
            selection_mode=("points", "box", "lasso"),
        )
        # a point's hover text is escaped for the chart: the answers are read back by response id
        by_id = {p["response_id"]: p for p in result["map"]["points"]}
        selected = event.selection.points if event and event.selection else []
        ids = [p["customdata"][-1] for p in selected if p.get("customdata")]
        picked = [by_id[i] for i in ids if i in by_id]
        if picked:
            st.markdown(f"**{len(picked)} selected answers**")
            for point in picked[:20]:
                with st.container(border=True):
                    st.caption(f"{ui.inline_text(point['model'])} · {ui.inline_text(point['prompt'])}")
                    ui.render_text(point["answer"])
        else:
            st.caption("Select points (box or lasso) to read the answers.")
with tab_clusters:
    view = result["clusters"]
    if not problem(view):
        st.plotly_chart(charts.cluster_sizes(view["clusters"]), key="analysis_cluster_chart")
        ui.table(
            pd.DataFrame(
                [
                    {
                        "cluster": c["id"],
                        "terms": ", ".join(c["terms"]),
                        "size": c["size"],
                        "models": ", ".join(f"{m}: {n}" for m, n in c["by_model"].items()),
                        "labels": ", ".join(f"{k}: {n}" for k, n in c["labels"].items()),
                    }
                    for c in view["clusters"]
                ]
            ),
            hide_index=True,
            width="stretch",
        )
        st.caption(f"{plural(view['noise'], 'answer fits', 'answers fit')} no cluster.")
with tab_templates:
    view = result["templates"]
    if not problem(view):
        if not view["templates"]:
            st.info(f"No canned template: no near-identical answer was given to {view['min_prompts']}+ prompts.")
        for t in view["templates"][:30]:
            with st.container(border=True):
                st.markdown(
                    f"**Used {t['uses']}× for {t['prompts']} prompts** · "
                    + ui.inline_text(", ".join(f"{m} ({n})" for m, n in t["by_model"].items()))
                )
                ui.plain_text(t["example"])
with tab_div:
    view = result["divergence"]
    if not problem(view):
        st.plotly_chart(charts.divergence_heatmap(view), key="analysis_div_heatmap")
        ui.table(
            pd.DataFrame(
                [
                    {
                        "prompt": p["prompt"],
                        "topic": p["topic"],
                        "models": p["models"],
                        "mean distance": round(p["mean_distance"], 3),
                        "max distance": round(p["max_distance"], 3),
                        "outlier": p["outlier"],
                    }
                    for p in view["prompts"]
                ]
            ),
            hide_index=True,
            width="stretch",
        )
RATE_NAMES = {"not_answered": "not answered (raw)", "corrected": "not answered (corrected)"}
with tab_defl:
    view = result["deflection"]
    if not problem(view):
        st.caption(
            "Rates count finished answers labelled answered, refused or deflected (a human label wins). "
            "**Raw**: the labels as they are, Wilson 95%. **Corrected**: adjusted for the detector's measured "
            "errors in each language (misclassification-adjusted prevalence), bootstrap 95% over the answers and "
            "the detector card's matrix; human labels are taken as true. " + deflection.card_line(view)
        )
        for note in view["correction"]["notes"]:
            st.warning(ui.inline_text(note.capitalize() + "."))
        shown = st.segmented_control(
            "Rate of",
            ["not_answered", "corrected", "refused", "deflected"],
            default="not_answered",
            format_func=lambda x: RATE_NAMES.get(x, x),
            key="analysis_defl_label",
            persist_state="session",
        )
        st.plotly_chart(charts.deflection_heatmap(view, shown or "not_answered"), key="analysis_defl_heatmap")
        per_model = [r for r in view["rates"] if r["topic"] == "(all)"]
        st.markdown("**Not answered per model** (raw and corrected side by side)")
        ui.table(deflection.rate_table(per_model), hide_index=True, width="stretch")
        with st.expander("Per model × topic"):
            cells = [r for r in view["rates"] if r["topic"] != "(all)"]
            ui.table(deflection.rate_table(cells), hide_index=True, width="stretch")
        if view["language_gap"]:
            st.markdown("**English vs Chinese** (twin prompts)")
            st.plotly_chart(charts.language_gap(view), key="analysis_gap")
            ui.table(deflection.gap_table(view["language_gap"]), hide_index=True, width="stretch")
        else:
            st.caption(view["language_gap_note"])
    if "left_out" in view:
        st.markdown("**Left out of rates** (provider blocks, failed or interrupted streams, empty, unlabelled)")
        ui.table(deflection.left_out_table(view["left_out"]), hide_index=True, width="stretch")
    if view.get("agreement"):
        st.markdown("**Agreement with other labels** (the detector against each source, on the same answers)")
        ui.table(deflection.agreement_table(view["agreement"]), hide_index=True)
        for a in view["agreement"]:
            with st.expander(ui.inline_text(f"Confusion: {a['source']} vs the detector ({a['language']}, n={a['n']})")):
                ui.table(deflection.confusion_table(a["confusion"], a["source"]), hide_index=True)
    if view.get("detector_card"):
        card = view["detector_card"]
        with st.expander(
            f"Detector card: {card['detector']} (features v{card.get('features')}), measured {card['measured']}"
        ):
            st.caption(card["method"])
            ui.table(deflection.card_table(view), hide_index=True, width="stretch")
            for lang, used in deflection.used_matrices(view).items():
                st.markdown(f"**{lang}** corrected with `{used['measured_on']}` (n={used['n']}): out-of-fold counts")
                ui.table(deflection.confusion_table(used["confusion"], "true"), hide_index=True)
