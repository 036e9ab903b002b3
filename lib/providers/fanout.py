"""Fan-out: one prompt to several endpoints at once, each streamed on one event loop.

Each target streams into its own Outcome; `on_update` is called (throttled per target) so a UI
can repaint one placeholder per column, and `on_done` as soon as one target finishes, so its
row is stored without waiting for the slowest model. A failure in one target never touches
the others: not a provider failure (it becomes that target's Outcome), and not an exception in
`on_done` either (the other targets finish and are handed over before it is raised). If the
whole run is interrupted, the unfinished targets are marked `interrupted` with what they
streamed so far and handed to `on_done` before the interruption propagates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import openai

from db.vocab import Status
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome, stream_chat


@dataclass
class Target:
    """One column of a fan-out: an endpoint and the messages it is sent."""

    key: str
    endpoint: Endpoint
    messages: list[dict]
    overrides: dict = field(default_factory=dict)


UpdateFn = Callable[[Target, Outcome], None]


async def _run_one(
    target: Target,
    out: Outcome,
    on_update: UpdateFn | None,
    on_done: UpdateFn | None,
    min_interval: float,
    http_client,
    failures: list[Exception],
) -> None:
    last = 0.0
    async for state in stream_chat(target.endpoint, target.messages, target.overrides, out, http_client):
        now = time.monotonic()
        if on_update and (state.done or now - last >= min_interval):
            last = now
            on_update(target, state)
    if on_done:
        try:
            on_done(target, out)
        except Exception as exc:  # noqa: BLE001 - kept for the caller, after every other column is done
            failures.append(exc)


async def fan_out_async(
    targets: list[Target],
    on_update: UpdateFn | None = None,
    on_done: UpdateFn | None = None,
    min_interval: float = 0.1,
) -> dict[str, Outcome]:
    """Stream every target concurrently; returns each target's Outcome by key.

    `on_update` runs at most every `min_interval` seconds per target (and once at the end), so six
    fast streams repaint a page at most 60 times a second."""
    outcomes = {t.key: Outcome() for t in targets}
    failures: list[Exception] = []
    async with openai.DefaultAsyncHttpxClient() as http_client:  # one connection pool per run
        tasks = [
            asyncio.ensure_future(_run_one(t, outcomes[t.key], on_update, on_done, min_interval, http_client, failures))
            for t in targets
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for target in targets:
                out = outcomes[target.key]
                if not out.done:
                    out.status, out.error_kind, out.done = Status.INTERRUPTED, "interrupted", True
                    out.error_message = "Interrupted; the text streamed so far is kept."
                if out.status == Status.INTERRUPTED and on_done:
                    on_done(target, out)
            raise
    if failures:  # e.g. storing one column failed: the others finished and were handed over first
        raise failures[0]
    return outcomes


def fan_out(targets: list[Target], **kwargs) -> dict[str, Outcome]:
    """Synchronous wrapper: one event loop for one fan-out (clients are never reused across loops)."""
    return asyncio.run(fan_out_async(targets, **kwargs))
