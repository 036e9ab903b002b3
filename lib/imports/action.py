"""The import action: read a file completely, check it, then store its answers (or battles) in one
transaction as imported conversations, label them with the detector, and report what happened.

Why imported prompts live in an imported suite: every analysis reads a prompt's topic, its
language twin and its identity from the suite prompt an exchange is linked to (the English /
Chinese gap, divergence per prompt, topics). Linking imported turns to the prompts of a suite
named after the import gives imported answers all of that with no second code path: rows that
share a `pair` (SpeechMap's `question`) become suite prompts `PAIR-en` and `PAIR-zh`, twins of
each other, exactly like a probe suite's. The suite can also be run against live models from
the Suites page, so new answers line up with the imported ones prompt by prompt."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy.exc import IntegrityError

from db import config, embeddings, labels
from db import imports as store
from db.engine import session_scope
from db.vocab import LabelSource, Status
from lib.files import NAME_RUN, name_from_file
from lib.imports.readers import Progress, read_file
from lib.imports.records import AnswerRecord, BattleRecord, ImportProblems, Parsed, digest
from lib.safety import one_line_text

EXAMPLE = config.ROOT / "examples" / "speechmap-china-sample.jsonl.gz"
EXAMPLE_SOURCE = "speechmap-china-sample"
# the example's answers embedded by both bundled embedders (examples/README.md says how it is built)
EXAMPLE_VECTORS = config.ROOT / "examples" / "speechmap-china-sample.vectors.npz"
LABEL_BATCH = 256
MAX_SLOT = 64  # the width of response.slot


@dataclass(frozen=True)
class Agreement:
    """How often the detector gave an imported answer the label it came with."""

    compared: int
    agreed: int
    by_label: dict[str, tuple[int, int]] = field(default_factory=dict)  # imported label -> (n, agreed)

    @property
    def rate(self) -> float | None:
        """Share of agreement (None when nothing was compared)."""
        return self.agreed / self.compared if self.compared else None


@dataclass(frozen=True)
class ImportResult:
    """What one import did."""

    source: str  # the origin: conversations' meta "source", labels' source import:SOURCE
    file: str
    format: str  # rows | promptfoo | battles
    records: int  # answers or battles read
    answers_added: int
    votes_added: int
    conversations_added: int
    already_stored: int  # records whose content was imported before
    duplicates: int  # records repeated inside the file (imported once)
    suite: str | None  # the imported suite holding the prompts
    imported_labels: int
    detector_labels: int
    agreement: Agreement | None
    warnings: list[str]
    seconds: float
    vectors_added: int = 0  # precomputed embeddings stored with it (the example study only)

    @property
    def added_nothing(self) -> bool:
        """True when every record was already stored."""
        return self.answers_added == 0


def source_name(path: Path) -> str:
    """The origin an import is named after: the file's name without its suffixes."""
    stem = Path(path).name
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".csv"):
        stem = stem.removesuffix(suffix)
    return name_from_file(stem, "import")


def has_answers() -> bool:
    """True once the database holds any answer (the pages offer the example study until then)."""
    with session_scope() as session:
        return store.has_answers(session)


def example_state() -> str:
    """Whether the example study is "absent", "loaded", or "unfinished": stored, but with answers
    the detector has not labelled or precomputed embeddings not stored (its load was stopped part
    way: the page was left or closed while it loaded). `load_example` finishes it."""
    with session_scope() as session:
        answers, unlabelled = store.source_counts(session, EXAMPLE_SOURCE)
    if not answers:
        return "absent"
    if unlabelled or missing_example_vectors():
        return "unfinished"
    return "loaded"


def missing_example_vectors(path: Path = EXAMPLE_VECTORS) -> int:
    """How many of the example study's precomputed embeddings are not stored (0 without the file
    or when it cannot be read: the first analysis embeds what is missing)."""
    if not path.exists():
        return 0
    try:
        with np.load(path, allow_pickle=False) as data, session_scope() as session:
            return sum(len(new) for _, _, _, new in _unstored_vectors(session, data))
    except (OSError, ValueError, KeyError):
        return 0


def _unstored_vectors(session, data):
    """Per bundled embedder key of the example's vectors file `data`: (key, the texts' hashes, the
    index of its arrays in the file, the positions of the hashes not stored yet)."""
    for i, key in enumerate(str(k) for k in data["keys"]):
        hashes = [bytes(h).hex() for h in data[f"hashes_{i}"]]
        _, found = embeddings.vector_matrix(session, key, hashes)
        yield key, hashes, i, np.flatnonzero(~found)


def load_example(progress: Progress | None = None) -> ImportResult:
    """Import the bundled example study (see examples/README.md); a second load adds nothing."""
    if not EXAMPLE.exists():
        raise ImportProblems([f"{EXAMPLE}: the example study is missing from this installation"])
    result = import_file(EXAMPLE, source=EXAMPLE_SOURCE, progress=progress)
    try:
        added = store_example_vectors()
    except Exception as exc:  # noqa: BLE001 - the study is loaded; its first analysis just embeds it
        why = f"{EXAMPLE_VECTORS.name}: the precomputed embeddings were not stored ({type(exc).__name__}: {exc})"
        return dataclasses.replace(result, warnings=[*result.warnings, why])
    return dataclasses.replace(result, vectors_added=added)


def store_example_vectors(path: Path = EXAMPLE_VECTORS) -> int:
    """Store the example study's precomputed embeddings that are not stored yet; the number stored.

    The file holds, per bundled embedder key, the SHA-256 content hashes of the texts the first
    analysis embeds and their vectors as float16 (normalised again here, as float32): loading
    them saves the minutes the first analysis of the study would spend embedding on a CPU. Keys
    that the installed embedders no longer use are stored but never read. Raises OSError or
    ValueError for an unreadable file (nothing stored)."""
    if not path.exists():
        return 0
    added = 0
    with np.load(path, allow_pickle=False) as data, session_scope() as session:
        for key, hashes, i, new in _unstored_vectors(session, data):
            vectors = data[f"vectors_{i}"].astype(np.float32)
            if vectors.ndim != 2 or len(vectors) != len(hashes):
                raise ValueError(f"embedder {key}: {len(hashes)} hashes but vectors of shape {vectors.shape}")
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            embeddings.store_vectors(session, key, [hashes[j] for j in new], vectors[new])
            added += len(new)
    return added


def import_file(path: Path, source: str | None = None, progress: Progress | None = None) -> ImportResult:
    """The import action: validate the whole file, store what is new, label it with the detector.

    `source` names the origin (default: the file name). Raises ImportProblems listing every
    problem (file and line); nothing is written then. Rows already imported (same content) are
    skipped, so importing a file twice adds nothing. `progress(phase, done, total)` reports
    reading, storing and labelling."""
    started = time.perf_counter()
    path = Path(path)
    source = name_from_file(source, "import") if source else source_name(path)
    if source == EXAMPLE_SOURCE and path.resolve() != EXAMPLE.resolve():  # the pages note its answers apart
        raise ImportProblems(
            [f"{one_line_text(path.name)}: the source name {source!r} is the example study's; give --source NAME"]
        )
    parsed = read_file(path, progress)
    if parsed.problems:
        raise ImportProblems(parsed.problems)
    _fill_languages(parsed)
    plan = _Plan(parsed, source, path.name)
    if plan.problems:
        raise ImportProblems(plan.problems)
    if progress:
        progress("storing", 0, parsed.count)
    try:
        with session_scope() as session:
            conversations, stats = plan.build(session)  # raises ImportProblems before any write
            votes = store.add_imported(session, conversations)
    except IntegrityError:  # the content hashes are unique: another import stored some rows meanwhile
        raise ImportProblems(
            [
                f"{path.name}: another import stored some of these rows at the same time; nothing was "
                "written: import it again (only what is missing is added)"
            ]
        ) from None
    new = [r for c in conversations for e in c.exchanges for r in e.responses]
    prompts = {id(r): e.prompt for c in conversations for e in c.exchanges for r in e.responses}
    if progress:
        progress("storing", parsed.count, parsed.count)
    stopped = []  # answers stored by an earlier import of this file that was stopped while labelling
    if plan.stored_digests:
        with session_scope() as session:
            stopped = store.stored_without_detector_label(session, plan.stored_digests)
    labelled = _label(new, prompts, progress, stopped)
    return ImportResult(
        source=source,
        file=plan.filename,
        format=parsed.format,
        records=parsed.count,
        answers_added=len(new),
        votes_added=votes,
        conversations_added=len(conversations),
        already_stored=stats["stored"],
        duplicates=stats["duplicates"],
        suite=plan.suite_name if parsed.answers else None,
        imported_labels=sum(r.label is not None for r in new),
        detector_labels=labelled,
        agreement=_agreement([r.id for r in new if r.label is not None]),
        warnings=parsed.warnings,
        seconds=time.perf_counter() - started,
    )


def _fill_languages(parsed: Parsed) -> None:
    """Detect the language of records that did not say (en or zh, from the prompt)."""
    if all(r.language for r in parsed.answers) and all(b.language for b in parsed.battles):
        return  # nothing to detect: skip importing the providers package (slow to import)
    from lib.providers.chat import detect_language

    for record in parsed.answers:
        record.language = record.language or detect_language(record.prompt)
    for battle in parsed.battles:
        battle.language = battle.language or detect_language(battle.turns[0].prompt)


def _slot(model: str) -> str:
    if len(model) <= MAX_SLOT:
        return model
    return f"{model[: MAX_SLOT - 9]}-{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def _key_part(text: str) -> str:
    """An identifier safe as a suite prompt key; a hash keeps rewritten ones distinct."""
    safe = NAME_RUN.sub("-", text).strip("-.:")[:80]
    if safe == text and safe:
        return safe
    return f"{safe or 'p'}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


class _Plan:
    """How a parsed file becomes conversations, turns and suite prompts (checked on creation)."""

    def __init__(self, parsed: Parsed, source: str, filename: str):
        self.parsed, self.source = parsed, source
        self.filename = one_line_text(filename)  # stored and shown: no line break, override or lone surrogate
        self.suite_name = source
        self.problems: list[str] = []
        self.stored_digests: list[str] = []  # of the answers already stored (set by build)
        self.groups: dict[tuple, dict[int, list[AnswerRecord]]] = defaultdict(lambda: defaultdict(list))
        self.prompt_key: dict[int, str] = {}  # id(record) -> suite prompt key
        self.suite_prompts: dict[str, dict] = {}
        self._group_answers()
        self._suite_prompts()

    def _group_answers(self) -> None:
        """Rows of one conversation id (or, without one, of one prompt) form one conversation;
        rows of one turn in it form one exchange and must ask the same thing."""
        ignored_turns = 0
        for record in self.parsed.answers:
            if record.conversation is not None:
                key, turn = ("conversation", record.conversation), record.turn or 0
            else:
                key, turn = ("prompt", record.system, record.prompt), 0
                ignored_turns += record.turn is not None
            rows = self.groups[key][turn]
            if rows and (rows[0].prompt, rows[0].system) != (record.prompt, record.system):
                self.problems.append(
                    f"{record.line}: conversation {record.conversation!r} turn {turn} already has another "
                    f"prompt or system prompt ({rows[0].line}); give each row its turn"
                )
            rows.append(record)
        if ignored_turns:
            self.parsed.warnings.append(f"{ignored_turns} row(s) give a turn but no conversation id: turn ignored")

    def _suite_prompts(self) -> None:
        """One suite prompt per distinct prompt; rows sharing a pair id link their languages as twins."""
        first_line: dict[str, str] = {}
        by_pair: dict[str, dict[str, str]] = defaultdict(dict)
        for record in self.parsed.answers:
            if record.pair:
                key = f"{_key_part(record.pair)}-{record.language}"
                by_pair[record.pair][record.language] = key
            else:
                key = "p-" + digest(record.language, record.prompt)[:16]
            spec = self.suite_prompts.get(key)
            if spec is None:
                self.suite_prompts[key] = {
                    "key": key,
                    "text": record.prompt,
                    "language": record.language,
                    "topic": record.topic,
                    "kind": record.kind,
                    "twin_key": None,
                }
                first_line[key] = record.line
            elif spec["text"] != record.prompt:
                self.problems.append(
                    f"{record.line}: pair {record.pair!r} already has another {record.language} prompt "
                    f"({first_line[key]}); one pair is one request per language"
                )
            elif not spec["topic"] and record.topic:
                spec["topic"] = record.topic
            self.prompt_key[id(record)] = key
        for languages in by_pair.values():
            if len(languages) == 2:
                (_, first), (_, second) = languages.items()
                self.suite_prompts[first]["twin_key"] = second
                self.suite_prompts[second]["twin_key"] = first

    def _keep_stored_keys(self, stored: dict[str, str]) -> None:
        """Use the key an earlier release gave a pair's prompt (made from the pair id as it spelt it:
        `AnswerRecord.written`) when the suite holds that key with the same text and not today's:
        importing the same file again added the prompt a second time under the new key."""
        renamed: dict[str, str] = {}
        for record in self.parsed.answers:
            key = self.prompt_key.get(id(record))
            if not record.pair or key is None or key in stored or key in renamed:
                continue
            for spelt in record.written:
                old = f"{_key_part(spelt['pair'])}-{record.language}" if spelt.get("pair") else None
                if old and stored.get(old) == record.prompt and old not in self.suite_prompts:
                    renamed[key] = old
                    break
        if not renamed:
            return
        self.suite_prompts = {
            renamed.get(key, key): spec
            | {"key": renamed.get(key, key), "twin_key": renamed.get(spec["twin_key"], spec["twin_key"])}
            for key, spec in self.suite_prompts.items()
        }
        self.prompt_key = {record: renamed.get(key, key) for record, key in self.prompt_key.items()}

    def _check_suite(self, session) -> None:
        suite = store.find_suite(session, self.suite_name)
        if suite is None:
            return
        if not store.is_imported_suite(suite):
            raise ImportProblems(
                [
                    f"a suite named {self.suite_name!r} already exists and was not made by an import: "
                    "name this import differently (--source NAME)"
                ]
            )
        stored = {p.key: p.text for p in suite.prompts}
        self._keep_stored_keys(stored)
        clashes = [k for k, spec in self.suite_prompts.items() if k in stored and stored[k] != spec["text"]]
        if clashes:
            raise ImportProblems(
                [
                    f"the imported suite {self.suite_name!r} already holds other prompts under "
                    f"{', '.join(clashes[:5])}: name this import differently (--source NAME)"
                ]
            )

    def build(self, session) -> tuple[list[store.NewConversation], dict[str, int]]:
        """The conversations to write (new rows only) and counts of skipped ones."""
        # each record's digest, and the one an import before names were stored in one spelling wrote
        answers = [d for r in self.parsed.answers for d in r.digests()]
        battles = [_battle_response_digest(d, 0, "a") for b in self.parsed.battles for d in b.digests()]
        stored = store.stored_digests(session, answers + battles)
        self.stored_digests = sorted(stored)
        seen: set[str] = set()
        stats = {"stored": 0, "duplicates": 0}

        def is_new(record_digests: list[str]) -> bool:
            found = stored.intersection(record_digests)
            repeated = seen.intersection(record_digests)
            seen.update(record_digests)  # a row spelt one way, then the same row spelt another
            if found:
                stats["stored"] += 1
            elif repeated:
                stats["duplicates"] += 1
            return not found and not repeated

        planned = []
        if self.parsed.answers:
            self._check_suite(session)
            prompt_ids = store.suite_for_import(
                session, self.suite_name, f"prompts of {self.filename}", list(self.suite_prompts.values())
            )
            for turns in self.groups.values():
                conversation = self._conversation(turns, prompt_ids, is_new)
                if conversation is not None:
                    planned.append(conversation)
        for battle in self.parsed.battles:
            battle_digests = battle.digests()
            if is_new([_battle_response_digest(d, 0, "a") for d in battle_digests]):
                planned.append(self._battle(battle, battle_digests[0]))
        return planned, stats

    def _conversation(self, turns: dict[int, list[AnswerRecord]], prompt_ids: dict, is_new):
        exchanges, slots = [], []
        label_source = LabelSource.imported(self.source)
        for turn in sorted(turns):
            rows = [r for r in turns[turn] if is_new(r.digests())]
            if not rows:
                continue
            first = rows[0]
            exchange = store.NewExchange(
                turn_index=turn,
                prompt=first.prompt,
                system_prompt=first.system,
                language=first.language,
                suite_prompt_id=prompt_ids[self.prompt_key[id(first)]],
            )
            for r in rows:
                slot = _slot(r.model)
                slots += [slot] if slot not in slots else []
                exchange.responses.append(
                    store.NewResponse(
                        slot=slot,
                        model=r.model,
                        text=r.response,
                        digest=r.digest(),
                        status=r.status,
                        reasoning=r.reasoning,
                        error_message=r.error,
                        latency_ms=r.latency_ms,
                        input_tokens=r.input_tokens,
                        output_tokens=r.output_tokens,
                        cost_usd=r.cost_usd,
                        params={"source_id": r.source_id} if r.source_id else {},
                        label=(r.label, label_source, r.label_origin or "imported") if r.label else None,
                    )
                )
            exchanges.append(exchange)
        if not exchanges:
            return None
        meta = {"source": self.source, "file": self.filename, "format": self.parsed.format, "slots": slots}
        return store.NewConversation(title=exchanges[0].prompt.strip()[:200], meta=meta, exchanges=exchanges)

    def _battle(self, battle: BattleRecord, battle_digest: str) -> store.NewConversation:
        from lib.arena.battles import identity_leak

        leaked = any(identity_leak(t.answer_a) or identity_leak(t.answer_b) for t in battle.turns)
        vote_turn = battle.vote_turn if battle.vote_turn is not None else len(battle.turns) - 1
        exchanges = []
        for index, turn in enumerate(battle.turns):
            exchange = store.NewExchange(index, turn.prompt, battle.system, battle.language, None)
            for side, model, text in (("a", battle.model_a, turn.answer_a), ("b", battle.model_b, turn.answer_b)):
                exchange.responses.append(
                    store.NewResponse(
                        slot=side,
                        model=model,
                        text=text,
                        digest=_battle_response_digest(battle_digest, index, side),
                        status=Status.OK,
                        params={"source_id": battle.source_id} if battle.source_id else {},
                    )
                )
            if index == vote_turn:
                exchange.vote = store.NewVote(battle.winner, battle.blind, leaked, LabelSource.imported(self.source))
            exchanges.append(exchange)
        meta = {
            "source": self.source,
            "file": self.filename,
            "format": self.parsed.format,
            "slots": ["a", "b"],
            "battle": {"a": battle.model_a, "b": battle.model_b},
            "revealed": True,
            **battle.meta,
        }
        return store.NewConversation(title=battle.turns[0].prompt.strip()[:200], meta=meta, exchanges=exchanges)


def _battle_response_digest(battle_digest: str, turn: int, side: str) -> str:
    return digest(battle_digest, turn, side)


def _label(
    new: list[store.NewResponse], prompts: dict[int, str], progress: Progress | None, stored: list[tuple] = ()
) -> int:
    """Label the new answers with the detector, and `stored` ones (response id, prompt, text,
    status) that have no detector label yet, a batch at a time (outside the write transaction)."""
    from lib.deflection.labelling import LabelJob, label_responses

    jobs = [LabelJob(*row) for row in stored] + [LabelJob(r.id, prompts[id(r)], r.text, r.status) for r in new]
    done = 0
    for start in range(0, len(jobs), LABEL_BATCH):
        done += len(label_responses(jobs[start : start + LABEL_BATCH]))
        if progress:
            progress("labelling", min(start + LABEL_BATCH, len(jobs)), len(jobs))
    return done


def _agreement(response_ids: list[int]) -> Agreement | None:
    """The detector's agreement with the labels the answers came with."""
    if not response_ids:
        return None
    with session_scope() as session:
        found = labels.labels_by_response(session, response_ids)
    by_label: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for labs in found.values():
        imported = next((lab.label for lab in labs if lab.source.startswith(LabelSource.IMPORT_PREFIX)), None)
        detected = next((lab.label for lab in labs if LabelSource.is_detector(lab.source)), None)
        if imported is None or detected is None:
            continue
        by_label[imported][0] += 1
        by_label[imported][1] += imported == detected
    compared = sum(n for n, _ in by_label.values())
    agreed = sum(a for _, a in by_label.values())
    return Agreement(compared, agreed, {k: (n, a) for k, (n, a) in sorted(by_label.items())})
