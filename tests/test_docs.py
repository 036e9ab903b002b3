"""Documentation stays true: every command the README lists exists, and every endpoint field and
quirk documented in endpoints.toml is one the loader knows (and the other way round)."""

import re
import subprocess
import sys

from lib.providers.endpoints import FIELDS, QUIRKS
from tests.conftest import ROOT


def _cli_commands() -> set[str]:
    """Every command and `suite` subcommand the CLI defines, read from its Typer app."""
    import typer.main

    from cli import app

    group = typer.main.get_command(app)
    names = set()
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            names |= {f"{name} {sub}" for sub in command.commands}
        else:
            names.add(name)
    return names


def _readme_commands() -> set[str]:
    """Every command the README's command-line section shows (`cli.py NAME`, `suite SUB`)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        found = re.search(r"cli\.py (\w[\w-]*)", line)
        if not found:
            continue
        if found.group(1) == "suite":
            names |= {f"suite {sub}" for sub in re.findall(r"(?:suite |\| )(\w+)", line) if sub != "suite"}
        else:
            names.add(found.group(1))
    return names


def test_the_readme_documents_exactly_the_commands_the_cli_has():
    documented, defined = _readme_commands(), _cli_commands()
    assert "ask" in defined and "suite run" in defined  # the parse found real commands
    assert documented == defined, {"undocumented": defined - documented, "missing": documented - defined}


def test_documented_endpoint_fields_and_quirks_match_the_loader():
    header = "\n".join(line for line in (ROOT / "endpoints.toml").read_text().splitlines() if line.startswith("#"))
    fields_line = header.split("# Fields:")[1].split("# Quirks:")[0]
    for field in FIELDS:
        assert field in fields_line, field
    quirks_part = header.split("# Quirks:")[1]
    assert set(re.findall(r"(\w+) =", quirks_part)) == set(QUIRKS)


def test_help_shows_no_type_beside_switches_and_keeps_the_type_of_values():
    """`--db`, `--json`, `--help` take no value: no `<bool>` beside them in any command's --help;
    options that take one still show its type (`--batch <int>`, `--output <path>`)."""
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    for command in sorted(_cli_commands()):
        shown = runner.invoke(app, [*command.split(), "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, (command, shown.output)
        assert "<bool>" not in shown.output, (command, shown.output)
        assert "--help" in shown.output
    classify = runner.invoke(app, ["classify", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--batch\s+<int>", classify) and re.search(r"--db\s+Label every", classify), classify


def test_every_command_hint_in_a_message_is_the_one_the_readme_runs():
    """Messages name commands as the README runs them (`.venv/bin/python cli.py …`), never a bare
    `python cli.py` that would miss the virtual environment. Checked on every string in commands/,
    lib/ and views/ that is not a docstring."""
    import ast

    wrong = re.compile(r"(?<!\.venv/bin/)\bpython3? cli\.py|`cli\.py ")
    found = []
    for path in [*ROOT.glob("commands/*.py"), *ROOT.glob("views/*.py"), *ROOT.glob("lib/**/*.py")]:
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and id(node) not in docstrings else None
            if isinstance(text, str) and wrong.search(text):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    assert found == [], found
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "suite", "show", "no-such-suite"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "(see `.venv/bin/python cli.py suite list`)" in done.stderr, done.stderr
