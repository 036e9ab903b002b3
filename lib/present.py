"""Plain-text presentation helpers shared by the pages and the CLI (no Streamlit here)."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from db.vocab import Label, Winner

LABEL_COLOURS = {
    Label.ANSWERED: "green",
    Label.REFUSED: "red",
    Label.DEFLECTED: "orange",
    Label.BLOCKED: "violet",
    Label.EMPTY: "gray",
    Label.PARTIAL: "blue",
}
WINNER_TEXT = {Winner.A: "A is better", Winner.B: "B is better", Winner.TIE: "Tie", Winner.BOTH_BAD: "Both are bad"}


def format_metrics(ttft_ms, latency_ms, output_tokens, tokens_counted=False, cost_usd=None) -> str:
    """One footer line: time to first token, total time, tokens, tokens/s and cost."""
    parts = []
    if ttft_ms is not None:
        parts.append(f"first token {ttft_ms / 1000:.2f} s")
    if latency_ms is not None:
        parts.append(f"total {latency_ms / 1000:.2f} s")
    if output_tokens:
        parts.append(f"{output_tokens} tokens{' (counted)' if tokens_counted else ''}")
        if latency_ms and ttft_ms is not None and latency_ms > ttft_ms:
            rate = output_tokens / ((latency_ms - ttft_ms) / 1000) if output_tokens > 1 else None
            if rate:
                parts.append(f"{rate:.1f} tok/s")
    if cost_usd is not None:
        parts.append(f"${cost_usd:.5f}")
    return " · ".join(parts)


def safe_database_label(url: str) -> str:
    """The database URL with any password hidden, for display."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a display helper must not fail
        return "(unreadable database URL)"
