"""Suite run scheduling: 4 endpoints on the protocol test server with fixed latencies, 200
prompts, concurrency 4 per endpoint, every answer stored and labelled. The ideal wall time is
the work per endpoint divided by its concurrency (endpoints run side by side), where the work
of one item is its measured latency alone on this server (the nominal token delays plus the
server's own per-request cost). Prints one JSON object with `ideal_s`, `wall_s` and `ratio`
(wall over ideal), and how long finished answers waited before their transaction committed:
`commit_wait_first_ms` for the first batch (which no longer waits for the detector to import)
and `commit_wait_max_ms` over the run. The server runs in its own process; on 2 cores it
competes with the client for CPU, which is part of what the ratio shows."""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOKENS, DELAY, PROMPTS, CONCURRENCY, ENDPOINTS = 4, 0.1, 200, 4, 4


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    os.environ["PARALLAX_DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
    os.environ["PARALLAX_DATA_DIR"] = str(tmp)
    from tests.protocol_server import serve_in_subprocess

    server, url = serve_in_subprocess()
    try:
        suite = tmp / "bench.jsonl"
        suite.write_text(
            '{"name": "bench"}\n'
            + "".join(
                json.dumps({"id": f"p{i}", "text": f"prompt {i}", "language": "en", "topic": "bench"}) + "\n"
                for i in range(PROMPTS)
            )
        )
        user = tmp / "endpoints.user.toml"
        user.write_text(
            "".join(
                f'[endpoints.e{i}]\nbase_url = "{url}"\nmodel = "fixed-{TOKENS}-{DELAY}"\nkind = "local"\n'
                "max_retries = 0\n\n"
                for i in range(ENDPOINTS)
            )
        )
        os.environ["PARALLAX_USER_ENDPOINTS"] = str(user)
        from db.engine import session_scope
        from lib.providers.endpoints import load_endpoints
        from lib.suites.definitions import import_suite, load_file
        from lib.suites.runner import RunSpec, create_or_resume
        from lib.suites.worker import execute

        endpoints = load_endpoints()
        item_s = single_latency(endpoints["e0"])
        with session_scope() as s:
            import_suite(s, load_file(suite))
            run, _ = create_or_resume(
                s, RunSpec("bench", [f"e{i}" for i in range(ENDPOINTS)], concurrency=CONCURRENCY), endpoints
            )
            run_id = run.id
        waits: list[float] = []
        start = time.perf_counter()
        status = execute(
            run_id,
            endpoints,
            on_progress=lambda p: waits.append(p.commit_wait_max_ms),
            label=os.environ.get("BENCH_LABEL", "1") == "1",
        )
        wall = time.perf_counter() - start
    finally:
        server.terminate()
    ideal = PROMPTS * item_s / CONCURRENCY
    print(
        json.dumps(
            {
                "status": status,
                "endpoints": ENDPOINTS,
                "prompts": PROMPTS,
                "concurrency": CONCURRENCY,
                "nominal_item_s": TOKENS * DELAY,
                "item_s": round(item_s, 4),
                "ideal_s": round(ideal, 2),
                "wall_s": round(wall, 2),
                "ratio": round(wall / ideal, 3),
                "commit_wait_first_ms": round(waits[0], 1) if waits else None,
                "commit_wait_max_ms": round(max(waits), 1) if waits else None,
            }
        )
    )


def single_latency(endpoint) -> float:
    """Median time of one item alone on the server through a warm client (the unit of work)."""
    import asyncio

    import openai

    from lib.providers.stream import Outcome, stream_chat

    async def measure() -> list[float]:
        times = []
        async with openai.DefaultAsyncHttpxClient() as http:
            for _ in range(7):
                start = time.perf_counter()
                async for _state in stream_chat(endpoint, [{"role": "user", "content": "x"}], {}, Outcome(), http):
                    pass
                times.append(time.perf_counter() - start)
        return times

    times = sorted(asyncio.run(measure()))
    return times[len(times) // 2]


if __name__ == "__main__":
    # --help prints what the bench measures instead of starting it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
