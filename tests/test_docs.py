"""Documentation stays true: every command the README lists exists, and every endpoint field and
quirk documented in endpoints.toml is one the loader knows (and the other way round)."""

import re

from lib.providers.endpoints import FIELDS, QUIRKS
from tests.conftest import ROOT
from tests.test_cli import cli


def test_every_command_in_the_readme_exists():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"cli\.py (\w[\w-]*)", readme)) - {"suite"}
    documented |= {
        f"suite {sub}" for sub in re.findall(r"suite (list|show|import|run|status|results|cancel|resume)", readme)
    }
    top = cli("--help").stdout
    suite = cli("suite", "--help").stdout
    for command in documented:
        if command.startswith("suite "):
            assert command.split()[1] in suite, command
        else:
            assert command in top, command


def test_documented_endpoint_fields_and_quirks_match_the_loader():
    header = "\n".join(line for line in (ROOT / "endpoints.toml").read_text().splitlines() if line.startswith("#"))
    fields_line = header.split("# Fields:")[1].split("# Quirks:")[0]
    for field in FIELDS:
        assert field in fields_line, field
    quirks_part = header.split("# Quirks:")[1]
    assert set(re.findall(r"(\w+) =", quirks_part)) == set(QUIRKS)
