"""Text output sent to a pipe or a file is never hard-wrapped: each entry stays on its one line,
whatever its length, so `analyze | grep MODEL` finds the whole entry (Rich wraps at 80 columns
when it sees no terminal, unless told otherwise). On a terminal, the embedding bar shows only when
some answers need embedding."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from db import conversations, labels
from db.engine import session_scope
from lib.deflection import source_name
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome
from tests.conftest import ROOT
from tests.test_text_sections import sections, under
from tests.test_untrusted_streams import user_endpoints

LONG = "a-model-with-a-rather-long-name-that-fills-the-line-on-its-own"


def cli_piped(*args: str) -> subprocess.CompletedProcess:
    """The CLI with stdout and stderr captured (pipes) and no COLUMNS: what `cli.py … | grep` gets."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )


def cli_on_a_terminal(*args: str) -> tuple[int, str]:
    """The CLI with stdout and stderr on a pseudo-terminal of 120 columns: (exit code, what it showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color"},
        cwd=ROOT,
    )
    os.close(slave)
    shown = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown.append(chunk)
    os.close(master)
    return proc.wait(timeout=300), b"".join(shown).decode("utf-8", "replace")


def stored_long_names() -> None:
    """Two models with long names on ten twin prompt pairs, one refusing half of the Chinese ones."""
    models = [Endpoint(id=f"m{i}", name=f"{LONG}-{i}", base_url="http://h/v1", model=f"m{i}") for i in (1, 2)]
    with session_scope() as s:
        for k in range(10):
            for lang, prompt in (("en", f"Tell me about topic number {k}"), ("zh", f"告诉我关于第{k}号话题的事")):
                ex = conversations.add_exchange(s, conversations.create_conversation(s).id, prompt, language=lang)
                for i, endpoint in enumerate(models):
                    refuses = i == 1 and lang == "zh" and k % 2
                    text = "Sorry, I can't help with that." if refuses else f"Topic {k} is about this and that."
                    rid = conversations.add_response(s, ex.id, endpoint.id, endpoint, Outcome(text=text)).id
                    labels.set_label(s, rid, "refused" if refuses else "answered", source_name())


def test_analyze_piped_keeps_every_entry_on_its_line_and_opens_with_a_heading():
    stored_long_names()
    done = cli_piped("analyze")
    assert done.returncode == 0, done.stderr
    found = sections(done.stdout)
    assert not found[""], found[""]  # no untitled first block
    scope = under(found, "Scope")
    assert scope[0] == f"  40 answers, models: {LONG}-1, {LONG}-2", scope
    rates = under(found, "Not answered per model")
    assert len(rates) == 2 and all(line.endswith("corrected, of 20") for line in rates), rates
    assert all(line.startswith(f"  {LONG}-") for line in rates), rates
    # an interval reads [low, high], never a dash between signed bounds such as [-3–+45]
    assert "[0%, " in rates[0] and "–" not in "".join(rates), rates


def test_suite_results_and_leaderboard_tables_piped_are_not_wrapped(tmp_path):
    battles = tmp_path / "battles.csv"
    battles.write_text("model_a,model_b,winner\n" + f"{LONG}-1,{LONG}-2,model_a\n" * 3)
    done = cli_piped("leaderboard", "--battles", str(battles), "--bootstrap", "0")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if LONG in line]
    assert len(rows) == 2 and all(f"{LONG}-" in row and row.rstrip().endswith("│") for row in rows), done.stdout


def test_ask_piped_prints_each_answer_whole_under_its_models_name(protocol_server, tmp_path):
    user_endpoints(tmp_path, protocol_server.url, fast="echo", other="echo")
    prompt = "Please repeat this rather long sentence back to me word for word, all of it on one line, thanks."
    done = cli_piped("ask", prompt, "-m", "fast", "-m", "other")
    assert done.returncode == 0, done.stderr
    found = sections(done.stdout)
    assert [title for title in found if title] == ["fast", "other"], done.stdout
    assert all([line.strip() for line in lines] == [prompt] for title, lines in found.items() if title), done.stdout


def test_the_embedding_bar_shows_on_a_terminal_only_when_answers_need_embedding():
    stored_long_names()
    code, shown = cli_on_a_terminal("analyze")
    assert code == 0, shown
    assert "embedding answers" in shown  # 40 new answers: the bar says what takes the time
    code, shown = cli_on_a_terminal("analyze")
    assert code == 0, shown
    assert "embedding answers" not in shown and "Not answered per model" in shown  # all embedded now


# what a progress display leaves in a file: tqdm's bar and rate, Rich's bar
PROGRESS_MARKS = ("%|", "it/s]", "━", "Loading weights")


def test_no_library_shows_a_progress_display_on_a_stderr_that_is_not_a_terminal(protocol_server, tmp_path):
    """`analyze … 2>err.txt` while answers need embedding (the embedder loads: transformers' own
    "Loading weights" bar) and `suite run … 2>err.txt` (a Rich bar printed its last state) leave
    messages in the file, never a progress display."""
    stored_long_names()
    done = cli_piped("analyze")
    assert done.returncode == 0, done.stderr
    assert "answers not embedded yet" in done.stderr  # said once, in words
    assert not any(mark in done.stderr for mark in PROGRESS_MARKS), done.stderr
    user_endpoints(tmp_path, protocol_server.url, fast="echo")
    done = cli_piped("suite", "run", "china-sensitive", "-m", "fast", "--limit", "3")
    assert done.returncode == 0, done.stderr
    assert not any(mark in done.stderr for mark in PROGRESS_MARKS) and "run 1 " not in done.stderr, done.stderr


def test_a_suite_run_shows_its_progress_bar_on_a_terminal(protocol_server, tmp_path):
    user_endpoints(tmp_path, protocol_server.url, fast="echo")
    code, shown = cli_on_a_terminal("suite", "run", "china-sensitive", "-m", "fast", "--limit", "3")
    assert code == 0, shown
    assert "run 1" in shown and "3/3" in shown and "━" in shown, shown
