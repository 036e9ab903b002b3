"""Embedded model speed: tokens/s of SmolLM2 through our path (llama.cpp server + OpenAI client +
fan-out) versus llama-cpp-python called in-process on the same prompts and settings, and how
long the second of two embedded columns waits for its first token.

Prints one JSON object. `ratio` is server tokens/s over in-process tokens/s: both sides use
greedy decoding and the same max_tokens, and tokens/s is measured from the first token to the
last, so model loading and prompt processing are left out of both. `ttft_ratio` is the later
column's time to first token over the earlier one's when two columns ask at once (median over
rounds; about 1 when the server generates both together, several times that when it queues)."""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.providers import local_server  # noqa: E402
from lib.providers.endpoints import Endpoint  # noqa: E402
from lib.providers.fanout import Target, fan_out  # noqa: E402

PROMPTS = [
    "Explain how a rainbow forms.",
    "Write a short story about a lighthouse keeper.",
    "Describe the water cycle in detail.",
    "What are the main causes of the French Revolution?",
]
MAX_TOKENS = 160
# the server's thread count: all cores would be slower on a busy machine (see local_server.threads)
INPROCESS_THREADS = local_server.threads()
PAIR_ROUNDS = 5


def in_process(llm) -> tuple[int, float]:
    tokens, seconds = 0, 0.0
    for prompt in PROMPTS:
        first = last = None
        count = 0
        for chunk in llm.create_chat_completion(
            messages=[{"role": "user", "content": prompt}], max_tokens=MAX_TOKENS, temperature=0.0, stream=True
        ):
            if chunk["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                count += 1
        tokens, seconds = tokens + count - 1, seconds + (last - first)
    return tokens, seconds


def endpoint(url: str) -> Endpoint:
    return Endpoint(
        id="smollm2",
        name="smollm2",
        base_url=url,
        model=local_server.MODEL_ALIAS,
        kind="local",
        max_retries=0,
        timeout=300,
    )


def through_server(url: str) -> tuple[int, float]:
    tokens, seconds = 0, 0.0
    for prompt in PROMPTS:
        target = Target(
            "s", endpoint(url), [{"role": "user", "content": prompt}], {"max_tokens": MAX_TOKENS, "temperature": 0.0}
        )
        out = fan_out([target])["s"]
        assert out.status == "ok", out.error_message
        tokens += out.output_tokens - 1
        seconds += (out.latency_ms - out.ttft_ms) / 1000
    return tokens, seconds


def two_columns(url: str, round_index: int) -> tuple[float, float]:
    """(earlier, later) time to first token in ms when two columns ask at once, as on Compare.

    Each round's prompts are new to the server: a prompt it has cached would start sooner."""
    pair = [PROMPTS[round_index % len(PROMPTS)], PROMPTS[(round_index + 1) % len(PROMPTS)]]
    prompts = [f"Question {round_index}{side}: {prompt}" for side, prompt in zip("ab", pair, strict=True)]
    targets = [
        Target(f"c{i}", endpoint(url), [{"role": "user", "content": p}], {"max_tokens": MAX_TOKENS, "temperature": 0.7})
        for i, p in enumerate(prompts)
    ]
    outs = fan_out(targets)
    assert all(o.status == "ok" for o in outs.values()), [o.error_message for o in outs.values()]
    earlier, later = sorted(o.ttft_ms for o in outs.values())
    return earlier, later


def main() -> None:
    from llama_cpp import Llama

    rounds = 3  # alternate the two paths and keep each one's best round: the machine's noise is large
    proc, url = local_server.start(timeout=120)
    try:
        llm = Llama(model_path=str(local_server.model_path()), n_ctx=2048, n_threads=INPROCESS_THREADS, verbose=False)
        through_server(url)  # warm-up
        in_process(llm)
        server_runs, inproc_runs = [], []
        for _ in range(rounds):
            server_runs.append(through_server(url))
            inproc_runs.append(in_process(llm))
        llm.close()
        pairs = [two_columns(url, i) for i in range(PAIR_ROUNDS)]
    finally:
        local_server.stop(proc)
    s_tokens, s_seconds = max(server_runs, key=lambda r: r[0] / r[1])
    i_tokens, i_seconds = max(inproc_runs, key=lambda r: r[0] / r[1])
    server, inproc = s_tokens / s_seconds, i_tokens / i_seconds
    print(
        json.dumps(
            {
                "server": local_server.backend(),
                "slots": local_server.SLOTS if local_server.backend() == local_server.LLAMA_SERVER else 1,
                "prompts": len(PROMPTS),
                "rounds": rounds,
                "server_threads": local_server.threads(),
                "inprocess_threads": INPROCESS_THREADS,
                "server_tokens": s_tokens,
                "inprocess_tokens": i_tokens,
                "server_tok_s": round(server, 1),
                "inprocess_tok_s": round(inproc, 1),
                "ratio": round(server / inproc, 3),
                "pair_rounds": PAIR_ROUNDS,
                "ttft_ms": [[round(a), round(b)] for a, b in pairs],
                "ttft_ratio": round(statistics.median(b / a for a, b in pairs), 2),
            }
        )
    )


if __name__ == "__main__":
    # --help prints what the bench measures instead of starting it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
