"""Embedded model speed: tokens/s of SmolLM2 through our path (llama.cpp server + OpenAI client +
fan-out) versus llama-cpp-python called in-process on the same prompts and settings.

Prints one JSON object with `server_tok_s`, `inprocess_tok_s` and `ratio` (server over
in-process). Both sides use greedy decoding and the same max_tokens; tokens/s is measured from
the first token to the last, so model loading and prompt processing are left out of both."""

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.providers import local_server  # noqa: E402
from lib.providers.endpoints import Endpoint, Quirks  # noqa: E402
from lib.providers.fanout import Target, fan_out  # noqa: E402

PROMPTS = [
    "Explain how a rainbow forms.",
    "Write a short story about a lighthouse keeper.",
    "Describe the water cycle in detail.",
    "What are the main causes of the French Revolution?",
]
MAX_TOKENS = 160
INPROCESS_THREADS = max(1, os.cpu_count() or 1)  # in-process at its best: every core


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


def through_server(url: str) -> tuple[int, float]:
    endpoint = Endpoint(
        id="smollm2",
        name="smollm2",
        base_url=url,
        model=local_server.MODEL_ALIAS,
        kind="local",
        max_retries=0,
        timeout=300,
        quirks=Quirks(stream_usage=False),
    )
    tokens, seconds = 0, 0.0
    for prompt in PROMPTS:
        target = Target(
            "s", endpoint, [{"role": "user", "content": prompt}], {"max_tokens": MAX_TOKENS, "temperature": 0.0}
        )
        out = fan_out([target])["s"]
        assert out.status == "ok", out.error_message
        tokens += out.output_tokens - 1
        seconds += (out.latency_ms - out.ttft_ms) / 1000
    return tokens, seconds


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
    finally:
        local_server.stop(proc)
    s_tokens, s_seconds = max(server_runs, key=lambda r: r[0] / r[1])
    i_tokens, i_seconds = max(inproc_runs, key=lambda r: r[0] / r[1])
    server, inproc = s_tokens / s_seconds, i_tokens / i_seconds
    print(
        json.dumps(
            {
                "prompts": len(PROMPTS),
                "rounds": rounds,
                "server_threads": local_server.threads(),
                "inprocess_threads": INPROCESS_THREADS,
                "server_tokens": s_tokens,
                "inprocess_tokens": i_tokens,
                "server_tok_s": round(server, 1),
                "inprocess_tok_s": round(inproc, 1),
                "ratio": round(server / inproc, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
