"""Analytics maths on hand-made vectors: divergence, templates, cluster naming, Wilson, the
embedding cache and device choice."""

import numpy as np
import pytest

from lib.analysis import views as analysis
from lib.analysis.embeddings import embed_texts, get_embedder, pick_device
from lib.analysis.stats import wilson


def row(i, model, prompt, text, label="answered", **extra):
    base = {
        "response_id": i,
        "endpoint_id": model,
        "model_name": model,
        "text": text,
        "status": "ok",
        "exchange_id": extra.pop("exchange_id", 1),
        "prompt": prompt,
        "language": extra.pop("language", "en"),
        "suite_prompt_id": extra.pop("suite_prompt_id", None),
        "topic": extra.pop("topic", "(chat)"),
        "twin_key": extra.pop("twin_key", None),
        "kind": "chat",
        "prompt_key": None,
        "control_key": None,
        "suite_run_id": None,
        "label": label,
    }
    base.update(extra)
    return base


def unit(*v):
    v = np.array(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_divergence_distances_and_consensus_on_hand_made_vectors():
    rows = [row(1, "A", "p", "x"), row(2, "B", "p", "y"), row(3, "C", "p", "z")]
    vectors = np.stack([unit(1, 0), unit(1, 0), unit(0, 1)])
    view = analysis.divergence_view(rows, vectors)
    prompt = view["prompts"][0]
    assert prompt["outlier"] == "C"
    assert prompt["from_consensus"]["C"] == pytest.approx(1.0)
    assert prompt["from_consensus"]["A"] == pytest.approx(1 - 1 / np.sqrt(2))
    assert prompt["mean_distance"] == pytest.approx(2 / 3)
    assert view["matrix"][0][1] == pytest.approx(0.0) and view["matrix"][0][2] == pytest.approx(1.0)
    assert view["matrix"][0][0] is None


def test_divergence_needs_two_models():
    rows = [row(1, "A", "p", "x"), row(2, "A", "q", "y")]
    assert "at least two models" in analysis.divergence_view(rows, np.stack([unit(1, 0), unit(0, 1)]))["error"]


TOPICS = ["rivers", "birds", "trains", "stars", "bread", "music"]


def test_a_planted_template_is_found_across_prompts_and_models():
    canned = "I'm sorry, let's talk about something else."
    rows = [
        row(
            i,
            "Q" if i % 2 else "D",
            f"prompt {i}",
            canned if i < 6 else f"Real answer about {TOPICS[i - 6]}",
            label="deflected" if i < 6 else "answered",
        )
        for i in range(12)
    ]
    rows[1]["text"] = "I'm sorry, let's talk about something else!!"  # punctuation differs
    vectors = np.stack([unit(1, 0, 0) if i < 6 else unit(0, np.cos(i), np.sin(i)) for i in range(12)])
    view = analysis.templates_view(rows, vectors)
    assert len(view["templates"]) == 1
    template = view["templates"][0]
    assert template["uses"] == 6 and template["prompts"] == 6 and set(template["by_model"]) == {"Q", "D"}
    assert template["example"] == canned


def test_clusters_are_named_by_distinctive_terms_in_both_languages():
    texts = ["panda bamboo forest"] * 5 + ["熊猫 竹子 森林 熊猫"] * 5
    labels = np.array([0] * 5 + [1] * 5)
    names = analysis.name_clusters(texts, labels, top=3)
    assert set(names[0]) == {"panda", "bamboo", "forest"}
    assert "熊猫" in names[1]


def test_clustering_separates_planted_groups():
    rng = np.random.default_rng(0)
    centres = [unit(*rng.normal(size=16)) for _ in range(3)]
    vectors = np.stack([c + rng.normal(scale=0.02, size=16) for c in centres for _ in range(20)]).astype(np.float32)
    rows = [row(i, "A" if i % 2 else "B", f"p{i}", f"text {i // 20}") for i in range(60)]
    view, labels = analysis.clusters_view(rows, vectors)
    assert len(view["clusters"]) == 3 and all(c["size"] == 20 for c in view["clusters"])


def test_too_few_answers_get_a_reason_not_a_crash():
    rows = [row(1, "A", "p", "x")]
    view, _ = analysis.clusters_view(rows, np.stack([unit(1, 0)]))
    assert "at least" in view["error"]
    assert "at least 3" in analysis.map_view(rows, np.stack([unit(1, 0)]))["error"]
    assert analysis.deflection_view([])["error"]


def test_wilson_interval_matches_known_values():
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-3)


def test_deflection_rates_gap_and_blocks():
    rows = (
        [row(i, "Q", "en p", "t", label="answered", twin_key="k", language="en", topic="tiananmen") for i in range(4)]
        + [
            row(10 + i, "Q", "zh p", "t", label="deflected", twin_key="k", language="zh", topic="tiananmen")
            for i in range(4)
        ]
        + [row(20, "Q", "x", "", label="blocked", topic="tiananmen")]
    )
    view = analysis.deflection_view(rows)
    gap = view["language_gap"][0]
    assert gap["en"]["rate"] == 0 and gap["zh"]["rate"] == 1 and gap["gap"] == 1
    assert view["provider_blocks"]["Q"]["k"] == 1
    cell = next(r for r in view["rates"] if r["topic"] == "tiananmen")
    assert cell["n"] == 8 and cell["not_answered"]["k"] == 4  # the provider block is counted apart
    assert view["left_out"]["Q"]["blocked"] == 1 and view["left_out"]["Q"]["in_rates"] == 8


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [
        (4, True, (("cuda:0", "cuda:1", "cuda:2", "cuda:3"), True, 256, "cuda ×4")),
        (1, True, (("cuda",), True, 256, "cuda")),
        (0, True, (("mps",), False, 64, "mps")),
        (0, False, (("cpu",), False, 32, "cpu")),
    ],
)
def test_device_choice(cuda, mps, expected):
    choice = pick_device(cuda, mps)
    assert (choice.devices, choice.half, choice.batch_size, choice.label) == expected


def test_embedding_cache_computes_nothing_the_second_time(monkeypatch):
    from db.engine import session_scope

    embedder = get_embedder()
    calls = []
    original = embedder.encode
    monkeypatch.setattr(embedder, "encode", lambda texts: calls.append(len(texts)) or original(texts))
    texts = ["The moon orbits the earth.", "月亮绕着地球转。", "The moon orbits the earth."]
    with session_scope() as s:
        first = embed_texts(s, texts, embedder)
    with session_scope() as s:
        second = embed_texts(s, texts, embedder)
    assert calls == [2]  # two distinct texts, once
    assert first.dtype == np.float32 and first.shape == (3, 384)
    assert np.array_equal(first, second) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)


def test_embedding_a_scope_never_holds_the_write_lock_between_chunks():
    """Another writer (with no patience at all) writes while a scope is being embedded: each
    chunk is stored in a short transaction of its own, not in one held for the whole run."""
    from dataclasses import dataclass

    from sqlalchemy import func, select

    from db.engine import session_scope
    from db.models import Embedding

    @dataclass
    class Slow:
        key: str = "test-slow"
        dim: int = 4

        def encode(self, texts):
            with session_scope() as other:  # e.g. a vote cast meanwhile
                other.connection().exec_driver_sql("PRAGMA busy_timeout=0")
                other.add(Embedding(content_hash=f"other-{len(seen)}", embedder="other", dim=1, vector=b"\0" * 4))
            seen.append(len(texts))
            vectors = np.ones((len(texts), 4), np.float32)
            return vectors / 2

    seen: list[int] = []
    with session_scope() as s:
        vectors = embed_texts(s, [f"text {i}" for i in range(5)], Slow(), chunk=2)
    assert seen == [2, 2, 1] and vectors.shape == (5, 4)
    with session_scope() as s:
        assert s.scalar(select(func.count()).where(Embedding.embedder == "test-slow")) == 5
        assert s.scalar(select(func.count()).where(Embedding.embedder == "other")) == 3


def test_an_embedder_that_cannot_load_falls_back_to_the_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = get_embedder("/no/such/embedder-model")
    assert embedder.name == "all-MiniLM-L6-v2" and "/no/such/embedder-model" in embedder.fallback_reason


def test_model_text_in_map_hovers_is_escaped_not_rendered():
    from lib.analysis.charts import answer_map

    point = {
        "x": 0.0,
        "y": 0.0,
        "model": "M",
        "label": "answered",
        "cluster": -1,
        "prompt": "q",
        "answer": '<a href="javascript:alert(1)">click</a>',
        "response_id": 1,
    }
    data = answer_map([point]).data[0].customdata[0]
    assert "<a" not in data[2] and "&lt;a href=" in data[2]


def test_an_embedder_key_too_wide_for_its_column_is_kept_apart_by_a_hash():
    """Vectors are stored under the embedder's key (embedding.embedder, 300 wide): a long local
    model path is its start and a hash of the whole, so two long paths are two keys and PostgreSQL
    takes the row; a key that fits is unchanged (cached vectors stay found)."""
    from lib.analysis.embeddings import MAX_KEY_CHARS, _stored_key

    short = "sentence-transformers/all-MiniLM-L6-v2|windows-254"
    one, two = "/m/" + "a" * 400 + "/one|windows-254", "/m/" + "a" * 400 + "/two|windows-254"
    assert _stored_key(short) == short
    assert len(_stored_key(one)) == MAX_KEY_CHARS and _stored_key(one) != _stored_key(two)
    assert _stored_key(one) == _stored_key(one)
