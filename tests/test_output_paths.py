"""Output paths and input files: an output given as a folder (a trailing slash, or an existing
folder) is written into, the folder made when missing; every writer checks its targets first (a
device, a FIFO, a symbolic link, a missing parent folder, a file where a folder is needed → exit
2, nothing written) and replaces a file only when the new one is complete; every reader names the
file and line of what it cannot read."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from db.engine import session_scope
from lib.files import OutputPathError, StagedFile, check_output_path, write_text_atomic
from tests.conftest import ROOT
from tests.test_cli import cli
from tests.test_export import battle


@pytest.fixture
def one_vote():
    with session_scope() as s:
        battle(s, "a", "Capital of France?")


def _bad_target(kind: str, tmp_path: Path) -> Path:
    """An output path of one bad kind; the pointee of a link is tmp_path/'pointee'."""
    if kind == "symlink to a file":
        (tmp_path / "pointee").write_text("keep me")
        (tmp_path / "out").symlink_to(tmp_path / "pointee")
        return tmp_path / "out"
    if kind == "dangling symlink":
        (tmp_path / "out").symlink_to(tmp_path / "pointee")
        return tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(tmp_path / "out")
        return tmp_path / "out"
    if kind == "device":
        return Path("/dev/null")
    if kind == "missing folder":
        return tmp_path / "nowhere" / "out.jsonl"
    raise AssertionError(kind)


KINDS = ["symlink to a file", "dangling symlink", "fifo", "device", "missing folder"]


def _left_alone(kind: str, target: Path, tmp_path: Path) -> None:
    if kind == "symlink to a file":
        assert target.is_symlink() and (tmp_path / "pointee").read_text() == "keep me"
    if kind == "dangling symlink":
        assert target.is_symlink() and not (tmp_path / "pointee").exists()
    if kind == "fifo":
        assert stat.S_ISFIFO(target.lstat().st_mode)
    if kind == "device":
        assert stat.S_ISCHR(Path("/dev/null").stat().st_mode)
    assert not list(tmp_path.rglob("*.part")), "a temporary file was left behind"


@pytest.mark.parametrize("kind", KINDS)
def test_export_refuses_a_target_that_is_not_a_regular_file(kind, tmp_path, one_vote):
    target = _bad_target(kind, tmp_path)
    done = cli("export", "-f", "trl", "-o", str(target))
    assert done.returncode == 2, done.stderr
    assert str(target) in done.stderr or str(target.parent) in done.stderr
    assert "Traceback" not in done.stderr
    _left_alone(kind, target, tmp_path)


@pytest.mark.parametrize("kind", ["symlink to a file", "fifo"])
def test_a_bad_card_path_writes_neither_file(kind, tmp_path, one_vote):
    card = _bad_target(kind, tmp_path)
    data = tmp_path / "data.jsonl"
    done = cli("export", "-f", "trl", "-o", str(data), "--card", str(card))
    assert done.returncode == 2 and str(card) in done.stderr, done.stderr
    assert not data.exists()
    _left_alone(kind, card, tmp_path)


def test_export_writes_data_and_card_and_replaces_an_old_file(tmp_path, one_vote):
    data, card = tmp_path / "data.jsonl", tmp_path / "card.md"
    data.write_text("old\n")
    data.chmod(0o640)
    done = cli("export", "-f", "trl", "-o", str(data), "--card", str(card))
    assert done.returncode == 0, done.stderr
    assert data.read_text().startswith('{"prompt"') and card.read_text().startswith("# Parallax")
    assert stat.S_IMODE(data.stat().st_mode) == 0o640  # the replaced file keeps its permissions
    same = cli("export", "-f", "trl", "-o", str(data), "--card", str(data))
    assert same.returncode == 2 and "same file" in same.stderr


@pytest.mark.parametrize("kind", ["symlink to a file", "device"])
def test_classify_refuses_a_bad_output_before_labelling(kind, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "q", "response": "I cannot help with that."}\n')
    target = _bad_target(kind, tmp_path)
    done = cli("classify", str(source), "-o", str(target))
    assert done.returncode == 2 and str(target) in done.stderr, done.stderr
    _left_alone(kind, target, tmp_path)


def _answers(tmp_path: Path) -> Path:
    source = tmp_path / "answers.jsonl"
    source.write_text('{"prompt": "q", "response": "I cannot help with that."}\n')
    return source


@pytest.mark.parametrize("given", ["new/", "new//", "existing", "existing/"])
def test_classify_writes_into_a_folder_given_with_a_slash_or_existing(given, tmp_path):
    (tmp_path / "existing").mkdir()
    done = cli("classify", str(_answers(tmp_path)), "-o", f"{tmp_path}/{given}")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / given.strip("/")
    assert folder.is_dir() and [p.name for p in folder.iterdir()] == ["answers.labelled.jsonl"]
    assert '"label": "refused"' in (folder / "answers.labelled.jsonl").read_text()
    assert str(folder / "answers.labelled.jsonl") in done.stderr


def test_export_writes_data_and_card_into_folders_given_with_a_slash(tmp_path, one_vote):
    (tmp_path / "cards").mkdir()
    done = cli("export", "-f", "csv", "-o", f"{tmp_path}/out/", "--card", str(tmp_path / "cards"))
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["parallax-csv.csv"]
    assert (tmp_path / "cards" / "parallax-csv-README.md").read_text().startswith("# Parallax")
    both = cli("export", "-f", "trl", "-o", f"{tmp_path}/both/", "--card", f"{tmp_path}/both/")
    assert both.returncode == 0, both.stderr
    assert sorted(p.name for p in (tmp_path / "both").iterdir()) == ["parallax-trl-README.md", "parallax-trl.jsonl"]


def _folder_target(kind: str, tmp_path: Path) -> tuple[str, str]:
    """An output given as a folder that cannot be used, and the path the message must name."""
    if kind == "a file where the folder should be":
        (tmp_path / "taken").write_text("keep me")
        return f"{tmp_path}/taken/", str(tmp_path / "taken")
    if kind == "a file as the new folder's parent":
        (tmp_path / "taken").write_text("keep me")
        return f"{tmp_path}/taken/new/", str(tmp_path / "taken")
    if kind == "a missing parent":
        return f"{tmp_path}/nowhere/new/", str(tmp_path / "nowhere")
    raise AssertionError(kind)


FOLDER_KINDS = ["a file where the folder should be", "a file as the new folder's parent", "a missing parent"]


def _nothing_made(tmp_path: Path, *inputs: str) -> None:
    left = {p.name for p in tmp_path.iterdir()} - {"data", *inputs}  # data: the test's database folder
    assert left <= {"taken"}, f"made: {left}"
    assert not list(tmp_path.rglob("*.part")), "a temporary file was left behind"
    if "taken" in left:
        assert (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.parametrize("kind", FOLDER_KINDS)
def test_classify_refuses_a_folder_output_that_cannot_be_made(kind, tmp_path):
    source = _answers(tmp_path)
    given, named = _folder_target(kind, tmp_path)
    done = cli("classify", str(source), "-o", given)
    assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
    _nothing_made(tmp_path, source.name)


@pytest.mark.parametrize("option", ["-o", "--card"])
@pytest.mark.parametrize("kind", FOLDER_KINDS)
def test_export_refuses_a_folder_output_that_cannot_be_made(kind, option, tmp_path, one_vote):
    given, named = _folder_target(kind, tmp_path)
    other = ["--card", str(tmp_path / "card.md")] if option == "-o" else ["-o", str(tmp_path / "data.jsonl")]
    done = cli("export", "-f", "trl", option, given, *other)
    assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
    _nothing_made(tmp_path)


@pytest.mark.parametrize("kind", FOLDER_KINDS)
def test_train_deflection_refuses_a_folder_output_that_cannot_be_made_before_training(kind, tmp_path):
    given, named = _folder_target(kind, tmp_path)
    done = cli("train-deflection", "--no-db", "--output", given)
    assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr, done.stderr
    _nothing_made(tmp_path)


def test_train_deflection_checks_the_artifact_and_its_card_inside_a_folder_before_training(tmp_path):
    (tmp_path / "models" / "model.card.json").mkdir(parents=True)  # where the card of models/model.npz goes
    done = cli("train-deflection", "--no-db", "--output", f"{tmp_path}/models/")
    assert done.returncode == 2 and str(tmp_path / "models" / "model.card.json") in done.stderr, done.stderr
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["model.card.json"]
    (tmp_path / "named.npz").mkdir()  # numpy writes `--output named` to named.npz: that is the file checked
    done = cli("train-deflection", "--no-db", "--output", str(tmp_path / "named"))
    assert done.returncode == 2 and f"{tmp_path / 'named.npz'} is a folder" in done.stderr, done.stderr


def test_a_folder_made_for_an_output_is_removed_when_the_command_then_fails(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"response": "a" "x"}\n')
    done = cli("classify", str(bad), "-o", f"{tmp_path}/labelled/")
    assert done.returncode == 2 and not (tmp_path / "labelled").exists(), done.stderr
    done = cli("export", "-f", "trl", "-o", f"{tmp_path}/pairs/", "--card", f"{tmp_path}/cards/")
    assert done.returncode == 2 and "nothing was written" in done.stderr, done.stderr
    assert not (tmp_path / "pairs").exists() and not (tmp_path / "cards").exists()


def test_analyze_html_makes_its_folder_but_not_a_missing_parent(tmp_path):
    done = cli("analyze", "--json", "--html", str(tmp_path / "nowhere" / "charts"))
    assert done.returncode == 2 and f"{tmp_path / 'nowhere'}: no such folder" in done.stderr, done.stderr
    assert not (tmp_path / "nowhere").exists()


def test_analyze_html_refuses_a_file_as_its_folder_before_analysing(tmp_path):
    target = tmp_path / "charts"
    target.write_text("a file, not a folder")
    done = cli("analyze", "--json", "--html", str(target))
    assert done.returncode == 2 and "is not a folder" in done.stderr, done.stderr
    assert target.read_text() == "a file, not a folder"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), StagedFile(target) as staged:
        staged.file.write("half of the new")
        raise RuntimeError("disk gone")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def test_a_target_swapped_for_a_symlink_mid_write_is_not_replaced(tmp_path):
    target = tmp_path / "out.txt"
    staged = StagedFile(target)
    staged.file.write("data")
    (tmp_path / "elsewhere").write_text("theirs")
    target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputPathError):
        staged.commit()
    assert target.is_symlink() and (tmp_path / "elsewhere").read_text() == "theirs"
    with pytest.raises(OutputPathError, match="no such folder"):
        check_output_path(tmp_path / "nope" / "x")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"model_a,model_b,winner\n" + "模型甲,模型乙,model_a\n".encode("gbk"), "line 2: not UTF-8"),
        (
            ("model_a,model_b,winner\na," + "x" * 200_000 + ",model_a\n").encode(),
            "battles.csv:2: a model name is longer",
        ),
        (b"model_a,model_b,winner\na,b\x00,model_a\n", "battles.csv:2: model_b contains a control character (NUL)"),
    ],
)
def test_leaderboard_names_the_file_and_line_of_an_unreadable_battles_csv(content, message, tmp_path):
    path = tmp_path / "battles.csv"
    path.write_bytes(content)
    done = cli("leaderboard", "--battles", str(path))
    assert done.returncode == 2 and message in done.stderr and str(path) in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_classify_reads_a_non_utf8_input_and_warns_naming_the_line(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"response": "fine"}\n{"response": "' + "拒绝".encode("gbk") + b'"}\n')
    done = cli("classify", str(path), "-o", str(tmp_path / "out.jsonl"))
    assert done.returncode == 0 and "in.jsonl, line 2: not UTF-8" in done.stderr, done.stderr
    assert len((tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def _cli_in(folder: Path, *args: str, stdin: str | None = None):
    """The CLI run from `folder`, where a file named "-" would land."""
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, input=stdin, cwd=folder
    )


def test_a_dash_output_is_standard_output_and_no_file_named_dash(tmp_path, one_vote):
    done = _cli_in(tmp_path, "export", "-f", "trl", "-o", "-")
    assert done.returncode == 0 and "wrote 1 trl row to standard output" in done.stderr, done.stderr
    assert json.loads(done.stdout)["prompt"][-1]["content"].startswith("Capital of France?")
    as_file = cli("export", "-f", "csv", "-o", str(tmp_path / "votes.csv"))
    piped = _cli_in(tmp_path, "export", "-f", "csv", "-o", "-")
    assert as_file.returncode == piped.returncode == 0, piped.stderr
    assert piped.stdout == (tmp_path / "votes.csv").read_text(encoding="utf-8")  # the same text a file gets
    card = _cli_in(tmp_path, "export", "-f", "kto", "-o", "data.jsonl", "--card", "-")
    assert card.returncode == 0 and card.stdout.startswith("# Parallax preference export (kto)"), card.stderr
    assert (tmp_path / "data.jsonl").read_text().startswith('{"prompt"')
    both = _cli_in(tmp_path, "export", "-f", "trl", "-o", "-", "--card", "-")
    assert both.returncode == 2 and "only one output can be standard output" in both.stderr and not both.stdout
    none = _cli_in(tmp_path, "export", "-f", "csv", "-o", "-", "--language", "zh")
    assert none.returncode == 2 and none.stdout == "" and "nothing was written" in none.stderr  # not even a header
    assert not (tmp_path / "-").exists()


def test_classify_reads_a_dash_input_from_stdin_and_writes_a_dash_output_to_stdout(tmp_path):
    rows = '{"prompt": "q", "response": "I cannot help with that."}\n{"prompt": "q2", "response": "Paris."}\n'
    (tmp_path / "in.jsonl").write_text(rows)
    done = _cli_in(tmp_path, "classify", "in.jsonl", "-o", "-")
    assert done.returncode == 0 and "labelled 2 rows into standard output" in done.stderr, done.stderr
    assert [json.loads(line)["label"] for line in done.stdout.splitlines()] == ["refused", "answered"]
    piped = _cli_in(tmp_path, "classify", "-", "-o", "-", stdin=rows)
    assert piped.returncode == 0 and piped.stdout == done.stdout, piped.stderr
    into = _cli_in(tmp_path, "classify", "-", "-o", "out/", stdin=rows)
    assert into.returncode == 0 and (tmp_path / "out" / "stdin.labelled.jsonl").read_text() == done.stdout
    assert not (tmp_path / "-").exists()


def test_outputs_that_cannot_be_standard_output_refuse_a_dash_and_make_nothing(tmp_path):
    train = _cli_in(tmp_path, "train-deflection", "--no-db", "--output", "-")
    assert train.returncode == 2 and "standard output" in train.stderr, train.stderr
    html = _cli_in(tmp_path, "analyze", "--html", "-")
    assert html.returncode == 2 and "standard output" in html.stderr, html.stderr
    assert not (tmp_path / "-").exists()
