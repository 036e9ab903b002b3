"""The shared vocabulary, defined once in db/vocab.py and re-exported here for views/ and
commands/, which do not import db/."""

from db.vocab import LANGUAGES, Label, LabelSource, Mode, RunStatus, Status, Winner

__all__ = ["LANGUAGES", "Label", "LabelSource", "Mode", "RunStatus", "Status", "Winner"]
