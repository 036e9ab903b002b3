"""The terminal output of `analyze` and `suite results`: each section under its own heading, after
a blank line, so a reader sees where the per-model rates end and the next section begins; --json
stays one JSON object without headings."""

import json

from db import conversations
from db.engine import session_scope
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome
from tests.test_app_deflection import stored_scope
from tests.test_cli import cli
from tests.test_suite_results import _endpoints

WIDE = {"COLUMNS": "200"}  # no wrapping: one line per row


def sections(text: str) -> dict[str, list[str]]:
    """Heading -> the lines under it, for text output whose sections start on its first line or
    after a blank line ("": lines under no heading)."""
    found, current, after_blank = {"": []}, "", True
    for line in text.splitlines():
        if not line.strip():
            after_blank = True
            continue
        if after_blank:
            current, found[line] = line, []
        else:
            found[current].append(line)
        after_blank = False
    return found


def under(found: dict[str, list[str]], heading: str) -> list[str]:
    """The lines of the one section whose heading starts with `heading`."""
    (lines,) = [lines for title, lines in found.items() if title.startswith(heading)]
    return lines


def test_analyze_prints_each_section_under_its_heading():
    stored_scope()
    done = cli("analyze", env=WIDE)
    assert done.returncode == 0, done.stderr
    found = sections(done.stdout)
    assert [title.split(" (")[0] for title in found if title] == [
        "Scope",
        "Clusters",
        "Canned templates",
        "Divergence",
        "Not answered per model",
        "English vs Chinese",
        "Left out of rates",
        "Agreement with other labels",
        "Detector card",
    ]
    assert under(found, "Scope")[0].startswith("  22 answers, models: ")  # the scope first, under its heading
    rates = under(found, "Not answered per model")
    assert len(rates) == 2 and rates[1].startswith("  Beta: 50% [") and "corrected, of 10" in rates[1], rates
    assert under(found, "Left out of rates") == ["  Beta: 1 blocked, 1 incomplete (of 12)"]
    assert {line.split(": kappa")[0] for line in under(found, "Agreement with other labels")} == {
        "  human (zh)",
        "  judge:big (zh)",
        "  import:study (zh)",
    }
    assert under(found, "Detector card")[0].startswith("  Corrected with the card of ")
    assert under(found, "English vs Chinese") == ["  no twin (English/Chinese) prompts answered in this scope"]


def test_analyze_of_an_empty_scope_says_why_under_each_heading_and_json_has_no_headings():
    done = cli("analyze", "--suite-run", "999", env=WIDE)  # a scope with no answers
    assert done.returncode == 0, done.stderr
    found = sections(done.stdout)
    assert len(found) == 6 and under(found, "Scope") == ["  0 answers, models: -"]
    reasons = [lines for title, lines in found.items() if title and not title.startswith("Scope")]
    assert all(lines == ["  no answers in this scope"] for lines in reasons)
    as_json = cli("analyze", "--json", "--suite-run", "999").stdout
    assert "Clusters" not in as_json and set(json.loads(as_json)) >= {"clusters", "templates", "deflection"}


def test_suite_results_prints_each_table_under_its_heading(protocol_server, tmp_path):
    _endpoints(tmp_path, protocol_server.url)
    done = cli("suite", "run", "china-sensitive", "-m", "fast", "-m", "filtered", "--limit", "4")
    assert done.returncode == 0, done.stderr
    found = sections(cli("suite", "results", "1", env=WIDE).stdout)
    titles = [title.split(" (")[0] for title in found if title]
    assert titles == [
        "Not answered per model and topic",
        "English vs Chinese",
        "Probe vs control",
        "Left out of rates",
        "Detector card",
    ], titles
    assert any("not answered, raw" in line for line in under(found, "Not answered per model and topic"))
    assert any("filtered" in line for line in under(found, "Left out of rates"))


def test_prompts_and_answers_with_line_breaks_stay_on_their_line_under_their_heading():
    models = [Endpoint(id=m, name=m, base_url="http://h/v1", model=m) for m in ("alpha", "beta")]
    with session_scope() as s:
        for k in range(4):
            ex = conversations.add_exchange(s, conversations.create_conversation(s).id, f"Question {k}\n\nin detail")
            canned = Outcome(text="Sorry.\n\nI can't help with that.", status="ok")
            conversations.add_response(s, ex.id, "alpha", models[0], canned)
            conversations.add_response(s, ex.id, "beta", models[1], Outcome(text=f"Answer {k}: yes.", status="ok"))
    done = cli("analyze", env=WIDE)
    assert done.returncode == 0, done.stderr
    found = sections(done.stdout)
    titles = [title.split(" (")[0] for title in found if title]
    assert titles[:4] == ["Scope", "Clusters", "Canned templates", "Divergence"]
    assert under(found, "Canned templates") == [
        "  used 4× for 4 prompts by alpha (4): Sorry. I can't help with that."
    ], done.stdout
    assert all(" (outlier " in line and "in detail" in line for line in under(found, "Divergence")), done.stdout
