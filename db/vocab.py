"""The shared vocabulary: the words stored in the database and spoken by every layer.

One definition each. These are plain string constants grouped in classes (not Enum members),
so they compare, serialise and bind to SQL exactly like the strings already stored."""

from __future__ import annotations


class Status:
    """What happened to one response: the stream finished, failed, was blocked or was cut short."""

    OK = "ok"
    ERROR = "error"
    BLOCKED = "blocked"  # the provider's gateway or content filter stopped it
    INTERRUPTED = "interrupted"  # the user (or a page rerun) stopped it; the partial text is kept
    ALL = (OK, ERROR, BLOCKED, INTERRUPTED)
    # text that may be replayed as a column's history in its next turn
    USABLE = (OK, INTERRUPTED)
    # a suite item with one of these needs no retry
    SETTLED = (OK, BLOCKED)


class Label:
    """The deflection label of one response."""

    ANSWERED = "answered"
    REFUSED = "refused"
    DEFLECTED = "deflected"
    BLOCKED = "blocked"  # the provider blocked it (not the model's choice)
    EMPTY = "empty"  # no text
    INCOMPLETE = "incomplete"  # the stream failed or was interrupted: partial text is not an answer
    PARTIAL = "partial"  # training-only class: refuses then complies, or offers only alternatives
    ALL = (ANSWERED, REFUSED, DEFLECTED, BLOCKED, EMPTY, INCOMPLETE)  # what a stored label may be
    NOT_ANSWERED = (REFUSED, DEFLECTED)  # what a deflection rate counts
    MODEL_CHOICES = (ANSWERED, REFUSED, DEFLECTED)  # what the model chose, apart from transport
    # ends the detector's rule for an answer in a language it does not read (the label is a guess)
    OTHER_LANGUAGE_RULE = "+other-language"

    @staticmethod
    def is_guess(rule: str | None) -> bool:
        """True for the detector's label of an answer in another language than English or Chinese."""
        return bool(rule) and rule.endswith(Label.OTHER_LANGUAGE_RULE)


class LabelSource:
    """Who gave a label. A human label always wins over an automatic one."""

    HUMAN = "human"
    DETECTOR = "parallax-deflection"  # stored as DETECTOR@version
    JUDGE_PREFIX = "judge:"  # judge:ENDPOINT_ID
    IMPORT_PREFIX = "import:"  # import:ORIGIN (labels that came with imported answers)

    @staticmethod
    def detector(version: str) -> str:
        """The source name of one detector version."""
        return f"{LabelSource.DETECTOR}@{version}"

    @staticmethod
    def judge(endpoint_id: str) -> str:
        """The source name of an LLM judge."""
        return f"{LabelSource.JUDGE_PREFIX}{endpoint_id}"

    @staticmethod
    def imported(origin: str) -> str:
        """The source name of labels that came with answers imported from `origin`."""
        return f"{LabelSource.IMPORT_PREFIX}{origin}"

    @staticmethod
    def is_detector(source: str) -> bool:
        """True for any version of the built-in detector."""
        return source.startswith(LabelSource.DETECTOR)

    @staticmethod
    def priority(source: str) -> int:
        """How much a source counts when labels disagree: human 2, detector 1, others 0."""
        if source == LabelSource.HUMAN:
            return 2
        return 1 if LabelSource.is_detector(source) else 0


class Mode:
    """What kind of conversation: side by side, blind battle, one suite item, or imported."""

    COMPARE = "compare"
    ARENA = "arena"
    SUITE = "suite"
    IMPORTED = "imported"
    ALL = (COMPARE, ARENA, SUITE, IMPORTED)


class Winner:
    """The outcome of a vote between answer A and answer B."""

    A = "a"
    B = "b"
    TIE = "tie"
    BOTH_BAD = "both_bad"
    ALL = (A, B, TIE, BOTH_BAD)


class RunStatus:
    """The state of a suite run. STOPPED is never stored: it is a run whose worker is gone."""

    PENDING = "pending"
    RUNNING = "running"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    STOPPED = "stopped"
    LIVE = (PENDING, RUNNING, CANCELLING)  # a worker should be on it
    FINISHED = (CANCELLED, COMPLETED, INCOMPLETE, FAILED)


LANGUAGES = ("en", "zh")
