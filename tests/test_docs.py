"""Documentation stays true: every command the README lists exists, and every endpoint field and
quirk documented in endpoints.toml is one the loader knows (and the other way round)."""

import re

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
