"""Export rated pairs as training data, in the exact row shapes trainers read.

- `trl`: TRL conversational preference rows with an explicit prompt:
  {"prompt": [messages], "chosen": [{"role": "assistant", "content": ...}], "rejected": [...]}
- `openai-dpo`: OpenAI preference fine-tuning JSONL:
  {"input": {"messages": [...]}, "preferred_output": [{"role": "assistant", "content": ...}],
   "non_preferred_output": [...]}
- `kto`: unpaired rows {"prompt": [...], "completion": [{"role": "assistant", ...}], "label": bool}
  from votes (winner true, loser false; both-bad both false) and single-answer thumbs.
- `jsonl` / `csv`: one flat row per vote with everything (models, winner, times, labels).

Pairwise formats skip ties and both-bad votes. Training formats keep only answers that
completed with text (never an error, a block, an interruption or an empty answer), never a pair
with identical texts, and one KTO row per answer (a thumb wins over a vote). The prompt holds
the endpoint's policy system prompt, the turn's system prompt and the earlier turns as the
*chosen* model saw them (in a multi-turn battle each side has its own history). CSV cells that
could run as spreadsheet formulas are neutralised and the file starts with a byte-order mark.
Rows are written as they are read, so 100k votes never sit in memory; nothing is written when
there is nothing to export. No key or endpoint URL is ever written.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from db import conversations, labels, votes
from db.engine import session_scope
from db.vocab import Status, Winner
from db.votes import VoteFilter
from lib.files import StagedFile, StagedGroup, check_output_paths
from lib.present import inline_code
from lib.providers.endpoints import EndpointConfigError, load_endpoints
from lib.safety import csv_row, json_text
from lib.storage import files_read

FORMATS = ("trl", "openai-dpo", "kto", "jsonl", "csv")
ROW_KEYS = {
    "trl": {"prompt", "chosen", "rejected"},
    "openai-dpo": {"input", "preferred_output", "non_preferred_output"},
    "kto": {"prompt", "completion", "label"},
}
FLAT_FIELDS = [
    "vote_id",
    "voted_at",
    "winner",
    "blind",
    "identity_leaked",
    "conversation_id",
    "turn_index",
    "language",
    "system_prompt",
    "prompt",
    "model_a",
    "model_a_name",
    "model_b",
    "model_b_name",
    "response_a",
    "response_b",
    "status_a",
    "status_b",
    "latency_ms_a",
    "latency_ms_b",
    "output_tokens_a",
    "output_tokens_b",
    "label_a",
    "label_b",
]


class NothingToExport(ValueError):
    """The filter matched no rows; no file was written."""


def trainable(response) -> bool:
    """Whether an answer may be a chosen, rejected or KTO completion: it completed (status ok)
    with text. An error, a block, an interruption or an empty answer is not a preference signal."""
    return response.status == Status.OK and bool((response.text or "").strip())


class _Policies:
    """The policy system prompt each answer's endpoint prepended (Endpoint.system_prompt).

    Stored with each answer (`policy_system_prompt` in its params); for answers stored before
    that, read from the endpoints file by endpoint id."""

    def __init__(self) -> None:
        self.configured: dict[str, str] | None = None

    def __call__(self, response) -> str:
        params = response.params or {}
        if "policy_system_prompt" in params:
            return params["policy_system_prompt"] or ""
        if self.configured is None:
            try:
                self.configured = {eid: e.system_prompt for eid, e in load_endpoints().items()}
            except EndpointConfigError:
                self.configured = {}
        return self.configured.get(response.endpoint_id, "")


def _prompt_messages(session: Session, exchange, response, cache: dict, policies: _Policies) -> list[dict]:
    """The messages the answering model saw before its answer: its policy prompt and the turn's
    system prompt (one system message), its own earlier turns, then the prompt."""
    policy = policies(response)
    key = (exchange.id, response.slot, policy)
    if key not in cache:
        messages = []
        system = "\n\n".join(s for s in (policy, exchange.system_prompt or "") if s.strip())
        if system:
            messages.append({"role": "system", "content": system})
        if exchange.turn_index > 0:
            messages += conversations.history_messages(
                session, exchange.conversation_id, response.slot, exchange.turn_index
            )
        messages.append({"role": "user", "content": exchange.prompt})
        if len(cache) > 10_000:
            cache.clear()
        cache[key] = messages
    return cache[key]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _label(response) -> str | None:
    label = labels.effective_label(response.labels)
    return label.label if label else None


def _flat(vote, exchange, a, b) -> dict:
    return {
        "vote_id": vote.id,
        "voted_at": vote.created_at.isoformat(),
        "winner": vote.winner,
        "blind": vote.blind,
        "identity_leaked": vote.identity_leaked,
        "conversation_id": exchange.conversation_id,
        "turn_index": exchange.turn_index,
        "language": exchange.language,
        "system_prompt": exchange.system_prompt,
        "prompt": exchange.prompt,
        "model_a": a.endpoint_id,
        "model_a_name": a.display_name,
        "model_b": b.endpoint_id,
        "model_b_name": b.display_name,
        "response_a": a.text,
        "response_b": b.text,
        "status_a": a.status,
        "status_b": b.status,
        "latency_ms_a": a.latency_ms,
        "latency_ms_b": b.latency_ms,
        "output_tokens_a": a.output_tokens,
        "output_tokens_b": b.output_tokens,
        "label_a": _label(a),
        "label_b": _label(b),
    }


def iter_rows(session: Session, fmt: str, f: VoteFilter) -> Iterator[dict]:
    """Rows of one export format, streamed from the database.

    Training formats keep only what a trainer can trust: both answers completed with text
    (`trainable`), chosen and rejected differ, and each answer gives at most one KTO row (a
    thumb wins over a vote on the same answer: it rates that answer alone). Flat formats keep
    every vote with its statuses; their CSV cells are made safe for spreadsheets."""
    for row, _ in _rows_with_models(session, fmt, f):
        yield row


def _rows_with_models(session: Session, fmt: str, f: VoteFilter) -> Iterator[tuple[dict, tuple[str, ...]]]:
    """(row, the endpoint ids of the answers in it): training rows carry no model names, yet the
    dataset card lists the models whose answers it holds."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    cache: dict = {}
    policies = _Policies()
    thumbed = votes.thumbed_responses(session, f) if fmt == "kto" else set()
    rated: set[int] = set()
    for vote, exchange, a, b in votes.iter_votes(session, f):
        if fmt in ("jsonl", "csv"):
            row = _flat(vote, exchange, a, b)
            yield (csv_row(row) if fmt == "csv" else row), (a.endpoint_id, b.endpoint_id)
            continue
        if fmt == "kto":
            good = {Winner.A: [a], Winner.B: [b], Winner.BOTH_BAD: [], Winner.TIE: []}[vote.winner]
            bad = {Winner.A: [b], Winner.B: [a], Winner.BOTH_BAD: [a, b], Winner.TIE: []}[vote.winner]
            for response, label in [(r, True) for r in good] + [(r, False) for r in bad]:
                if not trainable(response) or response.id in thumbed or response.id in rated:
                    continue
                rated.add(response.id)
                yield (
                    {
                        "prompt": _prompt_messages(session, exchange, response, cache, policies),
                        "completion": _assistant(response.text),
                        "label": label,
                    },
                    (response.endpoint_id,),
                )
            continue
        if vote.winner not in (Winner.A, Winner.B):
            continue
        chosen, rejected = (a, b) if vote.winner == Winner.A else (b, a)
        if not (trainable(chosen) and trainable(rejected)) or chosen.text.strip() == rejected.text.strip():
            continue
        prompt = _prompt_messages(session, exchange, chosen, cache, policies)
        models = (chosen.endpoint_id, rejected.endpoint_id)
        if fmt == "trl":
            yield {"prompt": prompt, "chosen": _assistant(chosen.text), "rejected": _assistant(rejected.text)}, models
        else:
            yield (
                {
                    "input": {"messages": prompt},
                    "preferred_output": _assistant(chosen.text),
                    "non_preferred_output": _assistant(rejected.text),
                },
                models,
            )
    if fmt == "kto":
        for thumb, exchange, response in votes.iter_thumbs(session, f):
            if trainable(response):
                yield (
                    {
                        "prompt": _prompt_messages(session, exchange, response, cache, policies),
                        "completion": _assistant(response.text),
                        "label": bool(thumb.up),
                    },
                    (response.endpoint_id,),
                )


def file_names(fmt: str) -> tuple[str, str]:
    """The names of an export's data file and dataset card: what the page offers for download and
    what `export` writes into a folder given as its output."""
    return f"parallax-{fmt}{'.csv' if fmt == 'csv' else '.jsonl'}", f"parallax-{fmt}-README.md"


@dataclass(frozen=True)
class ExportSummary:
    """What one export wrote."""

    format: str
    rows: int
    models: list[str]
    path: str
    card_path: str | None = None


def export(fmt: str, f: VoteFilter, path: Path, card: Path | None = None) -> ExportSummary:
    """The export action: stream one format to `path` (and a dataset card to `card` if given);
    either may be lib.files.STDOUT (standard output, written as it comes).

    Both targets are checked before anything is written (neither may be the database or another
    file Parallax reads) and both files appear only once both are complete. Raises ValueError for
    an unknown format, OutputPathError for a target that is not a regular file (a folder, a device,
    a symbolic link...) or is a file read, and NothingToExport when no row matches; no file is
    written in any of those cases."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    check_output_paths([path] + ([card] if card is not None else []), reads=files_read())  # never the database
    with session_scope() as session, StagedGroup() as outputs:  # both renamed into place once both are complete
        data = outputs.add(path, newline="")
        card_file = outputs.add(card) if card is not None else None
        count, models = _write_rows(session, fmt, f, data.file)
        if card_file is not None:
            card_file.file.write(dataset_card(fmt, count, f, models))
    return ExportSummary(fmt, count, models, str(path), str(card) if card is not None else None)


def write_export(session: Session, fmt: str, f: VoteFilter, path: Path) -> ExportSummary:
    """Stream one format to `path` (via a temporary file beside it) within an open session.

    Raises OutputPathError or NothingToExport, leaving no file."""
    with StagedFile(path, newline="") as data:
        count, models = _write_rows(session, fmt, f, data.file)
    return ExportSummary(fmt, count, models, str(path))


def _write_rows(session: Session, fmt: str, f: VoteFilter, out) -> tuple[int, list[str]]:
    """Write every row of one format to the open file `out`; (rows, models). NothingToExport if none."""
    count, models = 0, set()
    writer = csv.DictWriter(out, FLAT_FIELDS) if fmt == "csv" else None
    for row, used in _rows_with_models(session, fmt, f):
        if writer:
            if count == 0:  # with the first row: standard output cannot take a header back
                out.write("\ufeff")  # a byte-order mark first, so Excel reads the CSV as UTF-8 (Chinese shows)
                writer.writeheader()
            writer.writerow(row)
        else:
            out.write(json_text(row) + "\n")
        models.update(used)
        count += 1
    if count == 0:
        raise NothingToExport("no rated pairs match these filters; nothing was written")
    return count, sorted(models)


def dataset_card(fmt: str, rows: int, f: VoteFilter, models: list[str]) -> str:
    """A Markdown dataset card for one export: counts, the models whose answers it holds (endpoint
    ids), filters, licence note. Model names and filter values come from stored (untrusted) data:
    each is a code span, so the card renders them as written and fetches nothing wherever it is
    shown (the Export page, a dataset hub), and reads as written in the plain file."""
    filters = "\n".join(f"- {k}: {inline_code(v)}" for k, v in f.describe().items() if v not in (None, False))
    listed = ", ".join(inline_code(m) for m in models) if models else "none"
    return f"""# Parallax preference export ({fmt})

Exported {datetime.now():%Y-%m-%d %H:%M} by Parallax.

- Rows: {rows}
- Format: `{fmt}` — {FORMAT_DOCS[fmt]}
- Models (endpoint ids of the answers in these rows): {listed}

## Filters
{filters or "- none (all votes; identity-leaked battles excluded)"}

## How the rows were made
Votes were cast by Parallax users in blind battles (names hidden until the vote) or in named
side-by-side comparisons. Ties and both-bad votes are left out of pairwise formats. Only
answers that completed with text are used for training rows (no errors, blocks, interruptions
or empty answers), never two identical texts as a pair, and each answer gives at most one KTO
row. The prompt holds the policy system prompt, the system prompt and earlier turns as the
preferred model saw them.

## Licence note
The prompts are the users' own; the answers were generated by the listed models and are
subject to each provider's terms of use, which may restrict training on outputs. Check them
before you train. No API keys or endpoint addresses are included.
"""


FORMAT_DOCS = {
    "trl": 'TRL conversational preference rows: {"prompt", "chosen", "rejected"}',
    "openai-dpo": 'OpenAI preference fine-tuning: {"input": {"messages"}, "preferred_output", "non_preferred_output"}',
    "kto": 'KTO unpaired rows: {"prompt", "completion", "label"}',
    "jsonl": "one flat JSON object per vote with models, winner, texts, times and labels",
    "csv": "one flat CSV row per vote with models, winner, texts, times and labels",
}
