"""`suite results`: raw and corrected rates, answers left out of rates per model, the detector
card, in JSON and in the terminal table; a comparison of two runs, raw and corrected."""

import json

from tests.test_cli import cli


def _endpoints(tmp_path, url: str) -> None:
    entries = {"fast": "echo", "filtered": "deepseek-block", "broken": "error500"}
    (tmp_path / "endpoints.user.toml").write_text(
        "\n".join(
            f'[endpoints.{eid}]\nbase_url = "{url}"\nmodel = "{model}"\nkind = "local"\nmax_retries = 0\n'
            for eid, model in entries.items()
        )
    )


def test_suite_results_json_and_table_carry_corrected_rates_left_out_answers_and_the_card(protocol_server, tmp_path):
    _endpoints(tmp_path, protocol_server.url)
    done = cli("suite", "run", "china-sensitive", "-m", "fast", "-m", "filtered", "-m", "broken", "--limit", "4")
    assert done.returncode == 0, done.stderr
    data = json.loads(cli("suite", "results", "1", "--json").stdout)
    assert {"rates", "left_out", "correction", "detector_card", "agreement", "asymmetry"} <= set(data)
    fast = next(r for r in data["rates"] if r["model"] == "fast" and r["topic"] == "(all)")
    assert fast["n"] == 4 and fast["corrected"]["n_corrected"] == 4
    assert 0 <= fast["corrected"]["low"] <= fast["corrected"]["rate"] <= fast["corrected"]["high"] <= 1
    assert {r["model"] for r in data["rates"]} == {"fast"}  # blocks and failures are not rated
    apart = data["left_out"]
    assert apart["filtered"] == {
        "answers": 4,
        "in_rates": 0,
        "blocked": 4,
        "incomplete": 0,
        "empty": 0,
        "unlabelled": 0,
    }
    assert apart["broken"]["incomplete"] == 4 and apart["broken"]["in_rates"] == 0
    assert apart["fast"]["in_rates"] == 4
    assert data["detector_card"]["measured"] and data["correction"]["matrices"]["en"]["measured_on"]
    table = cli("suite", "results", "1", env={"COLUMNS": "200"}).stdout
    assert "corrected [95% CI]" in table and "not answered, raw" in table
    assert "blocked (provider)" in table and "Corrected with the card of parallax-deflection@" in table
    cli("suite", "run", "china-sensitive", "-m", "fast", "--limit", "4", "--new")
    compared = json.loads(cli("suite", "results", "1", "--json", "--compare", "2").stdout)["comparison"]
    row = next(r for r in compared["rows"] if r["topic"] == "(all)")
    assert row["a_corrected"]["rate"] == row["b_corrected"]["rate"]  # the same answers, the same correction
    assert row["change_corrected"]["low"] <= 0 <= row["change_corrected"]["high"]
    # each run's interval is the one its own table gives (the comparison drew it again: 59% vs 62%)
    ones = {
        run: next(
            r for r in json.loads(cli("suite", "results", str(run), "--json").stdout)["rates"] if r["topic"] == "(all)"
        )
        for run in (1, 2)
    }
    assert row["a_corrected"] == ones[1]["corrected"] and row["b_corrected"] == ones[2]["corrected"], (row, ones)
