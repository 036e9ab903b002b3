"""Fan-out overhead: six endpoints on the protocol test server with fixed per-token delays.

Each endpoint streams N tokens at a fixed delay (a different delay per endpoint); the slowest
one alone sets the floor. Prints one JSON object with `slowest_single_s`, `fanout_s` and
`ratio` (fan-out over slowest single; 1.0 is perfect overlap)."""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib.providers.endpoints import Endpoint  # noqa: E402
from lib.providers.fanout import Target, fan_out  # noqa: E402
from tests.protocol_server import serve_in_subprocess  # noqa: E402

TOKENS = 60
DELAYS = [0.010, 0.012, 0.014, 0.016, 0.018, 0.020]


def targets(url: str) -> list[Target]:
    """One target per delay; the model name tells the server how to stream."""
    out = []
    for i, delay in enumerate(DELAYS):
        endpoint = Endpoint(
            id=f"e{i}", name=f"e{i}", base_url=url, model=f"fixed-{TOKENS}-{delay}", kind="local", max_retries=0
        )
        out.append(Target(endpoint.id, endpoint, [{"role": "user", "content": "go"}]))
    return out


def timed(run_targets: list[Target]) -> float:
    start = time.perf_counter()
    outcomes = fan_out(run_targets, on_update=lambda t, s: None)
    assert all(o.status == "ok" for o in outcomes.values()), outcomes
    return time.perf_counter() - start


def main() -> None:
    server, url = serve_in_subprocess()  # its own process, so it does not share our GIL
    try:
        all_targets = targets(url)
        timed(all_targets[:1])  # warm-up: imports, first connection
        slowest = min(timed([all_targets[-1]]) for _ in range(3))
        together = min(timed(all_targets) for _ in range(3))
    finally:
        server.terminate()
    print(
        json.dumps(
            {
                "endpoints": len(DELAYS),
                "tokens": TOKENS,
                "slowest_single_s": round(slowest, 3),
                "fanout_s": round(together, 3),
                "ratio": round(together / slowest, 3),
            }
        )
    )


if __name__ == "__main__":
    # --help prints what the bench measures instead of starting it
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    main()
