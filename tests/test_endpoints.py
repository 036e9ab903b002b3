"""Endpoint files: presets, user overrides, clear errors, keys looked up by name only."""

from pathlib import Path

import pytest

from lib.providers import endpoints as ep

SHIPPED = Path(__file__).resolve().parent.parent / "endpoints.toml"


def test_shipped_presets_cover_the_systems_people_compare():
    loaded = ep.load_endpoints(SHIPPED)
    for endpoint_id in [
        "smollm2",
        "smollm2-guarded",
        "gpt-4o",
        "o1",
        "o3-mini",
        "deepseek-chat",
        "deepseek-reasoner",
        "qwen-max",
        "qwq-plus",
        "gemini-2-5-flash",
        "openrouter-qwen-72b",
        "kimi",
        "ollama-qwen2-5",
        "vllm",
        "lmstudio",
    ]:
        assert endpoint_id in loaded
    assert loaded["smollm2"].is_embedded and loaded["smollm2-guarded"].system_prompt
    assert loaded["o1"].quirks.max_tokens_param == "max_completion_tokens"
    assert loaded["deepseek-reasoner"].quirks.reasoning_field == "reasoning_content"


def test_hosted_presets_are_unavailable_until_their_key_is_set(monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    chat = ep.load_endpoints(SHIPPED)["deepseek-chat"]
    state = ep.endpoint_state(chat)
    assert not state.ready and state.status == "key missing" and "DEEPSEEK_API_KEY" in state.detail
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test")
    assert ep.endpoint_state(chat).ready


def test_key_is_read_from_streamlit_secrets_by_name(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('OPENAI_API_KEY = "sk-from-secrets"\n')
    monkeypatch.setenv("PARALLAX_SECRETS", str(secrets))
    gpt = ep.load_endpoints(SHIPPED)["gpt-4o"]
    assert ep.api_key(gpt) == "sk-from-secrets"


def test_user_file_overrides_fields_and_adds_endpoints(tmp_path):
    user = tmp_path / "endpoints.user.toml"
    user.write_text(
        "[endpoints.gpt-4o]\nparams = { temperature = 0.1 }\n\n"
        '[endpoints.my-qwen]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "qwen"\nkind = "local"\n\n'
        "[endpoints.kimi]\nenabled = false\n"
    )
    loaded = ep.load_endpoints(SHIPPED, user)
    assert loaded["gpt-4o"].params == {"temperature": 0.1}
    assert loaded["gpt-4o"].model == "gpt-4o" and loaded["gpt-4o"].source == "user override"
    assert loaded["my-qwen"].source == "user" and loaded["my-qwen"].kind == "local"
    assert "kimi" not in loaded


def test_malformed_toml_names_file_and_line(tmp_path):
    bad = tmp_path / "endpoints.toml"
    bad.write_text('[endpoints.a]\nbase_url = "http://x"\nmodel = oops\n')
    with pytest.raises(ep.EndpointConfigError, match=r"endpoints.toml.*line 3"):
        ep.load_endpoints(bad, tmp_path / "none.toml")


def test_schema_errors_name_the_entry_line_and_problem(tmp_path):
    bad = tmp_path / "endpoints.toml"
    bad.write_text('[endpoints.a]\nbase_url = "http://x"\nmodel = "m"\n\n[endpoints.b]\nbase_url = "http://y"\n')
    with pytest.raises(ep.EndpointConfigError, match=r"line 5: \[endpoints.b\] is missing 'model'"):
        ep.load_endpoints(bad, tmp_path / "none.toml")
    bad.write_text('[endpoints.a]\nbase_url = "http://x"\nmodel = "m"\ntemprature = 1\n')
    with pytest.raises(ep.EndpointConfigError, match="unknown field 'temprature'"):
        ep.load_endpoints(bad, tmp_path / "none.toml")
    bad.write_text('[endpoints.a]\nbase_url = "http://x"\nmodel = "m"\nquirks = { system_role = "boss" }\n')
    with pytest.raises(ep.EndpointConfigError, match="system_role"):
        ep.load_endpoints(bad, tmp_path / "none.toml")


def test_kind_and_base_url_agree_on_the_built_in_server(tmp_path):
    """ "embedded" as the base URL is the built-in server, whatever kind is written beside it, so
    an entry that writes both must agree; an override that gives a shipped embedded endpoint a URL
    of its own is no longer 'embedded' (it is called over HTTP like any other server)."""
    bad = tmp_path / "endpoints.toml"
    bad.write_text('[endpoints.a]\nbase_url = "embedded"\nmodel = "m"\nkind = "hosted"\n')
    with pytest.raises(ep.EndpointConfigError, match=r"line 4: \[endpoints.a\] has kind 'hosted' with base_url"):
        ep.load_endpoints(bad, tmp_path / "none.toml")
    bad.write_text('[endpoints.a]\nkind = "embedded"\nbase_url = "http://127.0.0.1:8080/v1"\nmodel = "m"\n')
    with pytest.raises(ep.EndpointConfigError, match=r"line 2: .*kind 'embedded' \(the built-in server\) with a"):
        ep.load_endpoints(bad, tmp_path / "none.toml")
    bad.write_text('[endpoints.a]\nbase_url = "embedded"\nmodel = "m"\n')  # no kind written: it is embedded
    assert ep.load_endpoints(bad, tmp_path / "none.toml")["a"].kind == "embedded"
    user = tmp_path / "user.toml"
    user.write_text('[endpoints.smollm2]\nbase_url = "http://127.0.0.1:8080/v1"\n')
    assert ep.load_endpoints(SHIPPED, user)["smollm2"].kind == "local"
    user.write_text('[endpoints.smollm2]\nbase_url = "https://example.org/v1"\n')
    assert ep.load_endpoints(SHIPPED, user)["smollm2"].kind == "hosted"
    with pytest.raises(ep.EndpointConfigError, match="the endpoint 'z' has kind 'hosted' with base_url"):
        ep.save_user_endpoint(
            "z", {"base_url": "embedded", "model": "m", "kind": "hosted"}, tmp_path / "u2.toml", path=SHIPPED
        )


def test_a_dangling_link_at_the_user_file_is_named_not_read_as_no_file(tmp_path):
    """A link whose file is gone (a moved dotfiles folder) was read as "no user file": every
    endpoint the user added vanished in silence, and saving one replaced the link."""
    user = tmp_path / "endpoints.user.toml"
    user.symlink_to(tmp_path / "gone" / "endpoints.user.toml")
    with pytest.raises(ep.EndpointConfigError, match=r"endpoints.user.toml: a link to .*gone.*, which does not exist"):
        ep.load_endpoints(SHIPPED, user)
    with pytest.raises(ep.EndpointConfigError, match="which does not exist"):
        ep.save_user_endpoint("mine", {"base_url": "http://127.0.0.1:1/v1", "model": "m"}, user, path=SHIPPED)
    assert user.is_symlink() and not user.exists()
    # a chain is named by the file at its end; a loop as a loop; a line break cannot forge a line
    user.unlink()
    middle = tmp_path / "middle.toml"
    middle.symlink_to(tmp_path / "end\nerror: forged.toml")
    user.symlink_to(middle)
    with pytest.raises(ep.EndpointConfigError) as info:
        ep.load_endpoints(SHIPPED, user)
    assert "end error: forged.toml', which does not exist" in str(info.value) and "\n" not in str(info.value)
    user.unlink()
    user.symlink_to(user)
    with pytest.raises(
        ep.EndpointConfigError, match=r"a link in a loop \(it leads back to itself\) \(remove the link\)$"
    ):
        ep.load_endpoints(SHIPPED, user)


def test_saving_through_a_link_writes_the_file_it_names(tmp_path):
    """A user endpoints file kept elsewhere and linked (a dotfiles folder) could never be saved
    from the Settings page ('is a symbolic link'): the file it names is rewritten, the link kept."""
    real = tmp_path / "dotfiles" / "endpoints.toml"
    real.parent.mkdir()
    real.write_text('[endpoints.mine]\nbase_url = "http://127.0.0.1:1/v1"\nmodel = "m"\n')
    user = tmp_path / "endpoints.user.toml"
    user.symlink_to(real)
    ep.save_user_endpoint("other", {"base_url": "http://127.0.0.1:2/v1", "model": "n"}, user, path=SHIPPED)
    assert user.is_symlink() and {"mine", "other"} <= set(ep.load_endpoints(SHIPPED, user))
    assert "other" in real.read_text()


def test_problems_of_both_files_are_named_together_and_capped(tmp_path):
    """A user file that does not parse is named beside the shipped file's problems (it hid them);
    past MAX_PROBLEMS broken entries the rest are counted, not checked (finding each one's line
    costs a parse of the file: 400 broken entries took 18 s)."""
    shipped = tmp_path / "endpoints.toml"
    shipped.write_text('[endpoints.x]\nbase_url = "ftp://h"\nmodel = "m"\n')
    user = tmp_path / "user.toml"
    user.write_text("[endpoints.y]\nmodel = \n")
    with pytest.raises(ep.EndpointConfigError) as info:
        ep.load_endpoints(shipped, user)
    assert len(info.value.problems) == 2, info.value.problems
    assert "line 2: [endpoints.x] base_url must be" in info.value.problems[0]
    assert "user.toml, line 2: not valid TOML" in info.value.problems[1]
    user.write_text(
        "".join(f'[endpoints.e{i}]\nbase_url = "ftp://h"\nmodel = "m"\n' for i in range(ep.MAX_PROBLEMS + 10))
    )
    shipped.write_text('[endpoints.x]\nbase_url = "http://h"\nmodel = "m"\n')
    with pytest.raises(ep.EndpointConfigError) as info:
        ep.load_endpoints(shipped, user)
    assert len(info.value.problems) == ep.MAX_PROBLEMS + 1
    assert info.value.problems[-1] == "… and 10 more entries not checked (fix these first)"
    # a dangling link at the user file joins the list too (it was raised alone, hiding the rest)
    shipped.write_text('[endpoints.x]\nbase_url = "ftp://h"\nmodel = "m"\n')
    user.unlink()
    user.symlink_to(tmp_path / "gone.toml")
    with pytest.raises(ep.EndpointConfigError) as info:
        ep.load_endpoints(shipped, user)
    assert len(info.value.problems) == 2, info.value.problems
    assert "[endpoints.x] base_url must be" in info.value.problems[0]
    assert "gone.toml', which does not exist" in info.value.problems[1]


def test_unknown_model_lists_the_known_ones():
    loaded = ep.load_endpoints(SHIPPED)
    with pytest.raises(ep.UnknownEndpoint) as info:
        ep.resolve(loaded, ["smollm2", "gpt-5-imaginary"])
    assert "gpt-5-imaginary" in str(info.value) and "smollm2" in str(info.value)


def test_saved_user_endpoint_round_trips(tmp_path):
    user = tmp_path / "endpoints.user.toml"
    ep.save_user_endpoint(
        "my-model",
        {
            "name": 'My "model"',
            "base_url": "http://127.0.0.1:1/v1",
            "model": "m",
            "key_env": "MY_KEY",
            "quirks": {"no_temperature": True},
        },
        user,
        confirm=ep.KeyDestination("MY_KEY", "127.0.0.1:1"),
    )
    ep.save_user_endpoint("other", {"base_url": "http://127.0.0.1:2/v1", "model": "o"}, user)
    loaded = ep.load_endpoints(SHIPPED, user)
    assert loaded["my-model"].name == 'My "model"' and loaded["my-model"].quirks.no_temperature
    assert loaded["other"].model == "o"


def test_cost_needs_prices_and_token_counts():
    gpt = ep.load_endpoints(SHIPPED)["gpt-4o"]
    assert gpt.cost(1_000_000, 1_000_000) == pytest.approx(12.5)
    assert gpt.cost(None, 10) is None
    assert ep.load_endpoints(SHIPPED)["smollm2"].cost(10, 10) is None


BASE = {"name": "Mine", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


@pytest.mark.parametrize("char", ["\x1b", "\x00", "\x7f", "\r", "\n", "\x07", "\u200b", "\u2028", "\u202e"])
def test_a_display_name_with_a_control_character_is_refused_and_nothing_is_written(tmp_path, char):
    """A display name is one cell of every table: an invisible or line-breaking character in it is
    refused as an imported model name's is ('gpt\u200b-4o' printed as another endpoint's name)."""
    user = tmp_path / "endpoints.user.toml"
    ep.save_user_endpoint("good", BASE, user)
    before = user.read_bytes()
    with pytest.raises(ep.EndpointConfigError, match="field 'name' contains (a control|a line|an invisible|a bidi)"):
        ep.save_user_endpoint("bad", {**BASE, "name": f"evil{char}name"}, user)
    assert user.read_bytes() == before and ep.load_endpoints(SHIPPED, user)["good"].name == "Mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endpoints.user.toml"]


def test_multi_line_fields_keep_line_breaks_and_every_saved_file_loads(tmp_path):
    user = tmp_path / "endpoints.user.toml"
    prompt = 'Line one\r\nline "two"\twith a tab \\ and 中文'
    ep.save_user_endpoint("multi", {**BASE, "system_prompt": prompt}, user)
    assert ep.load_endpoints(SHIPPED, user)["multi"].system_prompt == prompt


def test_a_change_that_would_not_load_is_refused_before_the_file_is_replaced(tmp_path):
    user = tmp_path / "endpoints.user.toml"
    with pytest.raises(ep.EndpointConfigError, match="missing 'model'"):
        ep.save_user_endpoint("half", {"base_url": "http://127.0.0.1:9/v1"}, user)
    assert not user.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("base_url", "ftp://example.org/v1", "http:// or https://"),
        ("base_url", "file:///etc/passwd", "http:// or https://"),
        ("base_url", "api.openai.com/v1", "http:// or https://"),
        ("base_url", "http:///v1", "http:// or https://"),
        ("base_url", "http://host:port/v1", "invalid port"),
        ("key_env", "PARALLAX_DATABASE_URL", "key_env must name"),
        ("key_env", "PARALLAX_SECRET_KEY", "key_env must name"),
        ("key_env", "HOME", "key_env must name"),
        ("key_env", "MY KEY", "key_env must name"),
        ("prices", {"input": "0.5", "output": 1}, "price 'input' must be a number"),
        ("prices", {"input": True}, "price 'input' must be a number"),
        ("prices", {"inptu": 1.0}, "unknown key 'inptu'"),
        ("timeout", 0, "timeout must be more than 0"),
        ("max_retries", -1, "max_retries must be 0 or more"),
        # params a request would send as they are (the command line refuses them as options)
        ("params", {"temperature": -1.0}, "params temperature must be a number from 0 to 2"),
        ("params", {"temperature": 1e308}, "params temperature must be a number from 0 to 2"),
        ("params", {"temperature": True}, "from 0 to 2, not true"),  # as TOML writes it, not Python's True
        ("params", {"temperature": "1.5"}, 'from 0 to 2, not "1.5"'),
        ("params", {"max_tokens": -5}, "params max_tokens must be a whole number from 1"),
        ("params", {"max_tokens": 1.5}, "params max_tokens must be a whole number from 1"),
        ("params", {"max_completion_tokens": 3_000_000_000}, "params max_completion_tokens must be a whole number"),
    ],
)
def test_values_that_cannot_work_are_refused_naming_the_line(tmp_path, field, value, message):
    path = tmp_path / "endpoints.user.toml"
    entry = {**BASE, field: value}
    path.write_text(ep.dump_toml({"endpoints": {"first": BASE, "bad": entry}}))
    with pytest.raises(ep.EndpointConfigError) as info:
        ep.load_endpoints(SHIPPED, path)
    text = path.read_text()
    line = next(i for i, t in enumerate(text.splitlines(), 1) if i > 7 and t.startswith(f"{field} ="))
    assert message in str(info.value) and f"{path}, line {line}: [endpoints.bad]" in str(info.value)
    with pytest.raises(ep.EndpointConfigError, match=message) as info:
        ep.save_user_endpoint("bad", entry, tmp_path / "other.toml")
    # the Settings form's entry is in no file yet: its refusal names the endpoint, not a line of
    # a file that does not have it
    assert str(info.value).startswith("the endpoint 'bad': ") and "other.toml" not in str(info.value)


def test_key_like_variables_are_accepted():
    for name in ("OPENAI_API_KEY", "HF_TOKEN", "ALPHA_KEY", "my_service_api_key"):
        assert ep.key_env_problem(name) is None


def test_an_endpoints_file_with_a_non_utf8_byte_names_the_file_and_line(tmp_path):
    path = tmp_path / "endpoints.user.toml"
    path.write_bytes(b'[endpoints.x]\nbase_url = "http://127.0.0.1:9/v1"\nname = "caf\xe9"\nmodel = "m"\n')
    with pytest.raises(ep.EndpointConfigError, match=r"line 3: not UTF-8"):
        ep.load_endpoints(SHIPPED, path)


def test_an_override_without_a_key_variable_keeps_the_shipped_one_and_needs_the_confirmation(tmp_path):
    """A shipped endpoint saved with only a new base_url keeps its shipped key_env when merged: the
    key goes to the new host, so the confirmation is asked (only the form's own fields were read,
    and the key was sent to any host unasked)."""
    user = tmp_path / "endpoints.user.toml"
    moved = {"name": "GPT-4o", "base_url": "https://evil.example/v1", "model": "gpt-4o"}
    with pytest.raises(ep.NeedsConfirmation) as info:
        ep.save_user_endpoint("gpt-4o", moved, user, path=SHIPPED)
    assert info.value.destination == ep.KeyDestination("OPENAI_API_KEY", "evil.example") and not user.exists()
    ep.save_user_endpoint("gpt-4o", moved, user, path=SHIPPED, confirm=info.value.destination)
    assert ep.load_endpoints(SHIPPED, user)["gpt-4o"].key_env == "OPENAI_API_KEY"
    # the same host again, or a new endpoint with no key at all, asks nothing
    ep.save_user_endpoint("gpt-4o", {**moved, "name": "Renamed"}, user, path=SHIPPED)
    ep.save_user_endpoint("keyless", {"base_url": "https://evil.example/v1", "model": "m"}, user, path=SHIPPED)


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        # the same host over plain http: the key would travel unencrypted (it saved unasked)
        ("http://api.openai.com/v1", "api.openai.com over plain http (unencrypted)"),
        # a host in another script is named as DNS resolves it, beside what was written
        ("https://\u0430pi.openai.com/v1", "\u0430pi.openai.com (xn--pi-6kc.openai.com)"),
    ],
)
def test_a_key_sent_unencrypted_or_to_a_look_alike_host_is_confirmed_by_what_it_is(tmp_path, base_url, shown):
    user = tmp_path / "endpoints.user.toml"
    with pytest.raises(ep.NeedsConfirmation) as info:
        ep.save_user_endpoint("gpt-4o", {"model": "gpt-4o", "base_url": base_url}, user, path=SHIPPED)
    assert info.value.destination == ep.KeyDestination("OPENAI_API_KEY", shown) and not user.exists()
    # the host's case and a trailing path are the same destination: nothing to confirm
    ep.save_user_endpoint("gpt-4o", {"model": "gpt-4o", "base_url": "https://API.OpenAI.com/v2"}, user, path=SHIPPED)


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://user:pa/ssSECRET@h.com/v1",
        "https://user:p?SECRET@h.com:x",
        "https:/user:SECRET@h.com:x/v1",
        "https:user:SECRET@x:y",
    ],
)
def test_a_password_is_never_shown_however_the_url_is_written(tmp_path, base_url):
    path = tmp_path / "endpoints.user.toml"
    path.write_text(f'[endpoints.x]\nmodel = "m"\nbase_url = "{base_url}"\n')
    with pytest.raises(ep.EndpointConfigError) as info:
        ep.load_endpoints(SHIPPED, path)
    assert "SECRET" not in str(info.value) and "***@" in str(info.value), str(info.value)


def test_sending_a_key_to_a_new_host_needs_a_confirmation_naming_both(tmp_path):
    user = tmp_path / "endpoints.user.toml"
    moved = {
        "name": "GPT-4o",
        "base_url": "https://attacker.example/v1",
        "model": "gpt-4o",
        "key_env": "OPENAI_API_KEY",
    }
    with pytest.raises(ep.NeedsConfirmation) as info:
        ep.save_user_endpoint("gpt-4o", moved, user, path=SHIPPED)
    assert info.value.destination == ep.KeyDestination("OPENAI_API_KEY", "attacker.example")
    assert "OPENAI_API_KEY" in str(info.value) and "attacker.example" in str(info.value) and not user.exists()
    with pytest.raises(ep.NeedsConfirmation):  # a confirmation for another host does not count
        ep.save_user_endpoint("gpt-4o", moved, user, path=SHIPPED, confirm=ep.KeyDestination("OPENAI_API_KEY", "x"))
    ep.save_user_endpoint("gpt-4o", moved, user, path=SHIPPED, confirm=info.value.destination)
    assert ep.load_endpoints(SHIPPED, user)["gpt-4o"].base_url == "https://attacker.example/v1"
    renamed = {**moved, "name": "GPT-4o (proxy)"}  # same key, same host: no question
    ep.save_user_endpoint("gpt-4o", renamed, user, path=SHIPPED)


def test_an_endpoint_id_wider_than_an_answers_column_key_is_refused_naming_the_line(tmp_path):
    """An id keys each answer's column (response.slot, 64 wide): PostgreSQL refused every answer of
    a 65-character id, and its judge's labels ("judge:ID" in label.source, 100 wide) past 94."""
    bad = tmp_path / "endpoints.toml"
    long_id = "m" * 65
    bad.write_text(
        '[endpoints.a]\nbase_url = "http://x"\nmodel = "m"\n\n'
        f'[endpoints.{long_id}]\nbase_url = "http://y"\nmodel = "m"\n'
    )
    with pytest.raises(ep.EndpointConfigError, match=rf"line 5: \[endpoints.{long_id}\] has an id longer than 64"):
        ep.load_endpoints(bad, tmp_path / "none.toml")
    bad.write_text(f'[endpoints.{"m" * 64}]\nbase_url = "http://y"\nmodel = "m"\n')
    assert list(ep.load_endpoints(bad, tmp_path / "none.toml")) == ["m" * 64]
    user = tmp_path / "endpoints.user.toml"
    with pytest.raises(ep.EndpointConfigError, match="has an id longer than 64 characters"):
        ep.save_user_endpoint(long_id, {"base_url": "http://127.0.0.1:2/v1", "model": "o"}, user)
    assert not user.exists()


def test_a_problem_names_the_line_of_its_field_within_the_entry(tmp_path):
    """A field's problem is at the line TOML defines it on (it was the entry's header line): a
    plain `field = …`, a setting under params/prices/quirks however written (dotted, its own table,
    inline), quoted and spaced names; never a line inside a string or of another entry."""
    path = tmp_path / "endpoints.user.toml"
    url = 'base_url = "http://127.0.0.1:9/v1"\n'
    cases = [
        ("[endpoints.a]\n" + url + 'model = "m"\ntimeout = 0\n', 4, "timeout must"),
        ("[endpoints.a]\n" + url + 'model = "m"\nparams.top_p = 0.9\nparams.temperature = -1\n', 5, "temperature"),
        ("[endpoints.a]\n" + url + 'model = "m"\n\n[endpoints.a.params]\nx = 1\ntemperature = -1\n', 7, "temperature"),
        ("[endpoints.a]\n" + url + 'model = "m"\nprices.input = 1\nprices.output = -3\n', 5, "price 'output'"),
        (
            "[endpoints.a]\n" + url + 'model = "m"\n[endpoints.a.quirks]\nno_temperature = true\nsystem_role = "x"\n',
            6,
            "'x'",
        ),
        ('[endpoints]\na = { base_url = "http://127.0.0.1:9/v1", model = "m", timeout = 0 }\n', 2, "timeout must"),
        ('[endpoints]\n\na.base_url = "http://127.0.0.1:9/v1"\na.model = "m"\na.timeout = 0\n', 5, "timeout must"),
        (
            'endpoints.a.base_url = "http://127.0.0.1:9/v1"\nendpoints.a.model = "m"\nendpoints.a.timeout = 0\n',
            3,
            "timeout",
        ),
        ('[ endpoints . "a" ]\n' + url + "model = 'm'\n\n'timeout' = 0\n", 5, "timeout must"),
        # text that looks like a key inside a multi-line string, an array or another entry's string
        ("[endpoints.a]\n" + url + 'model = "m"\nsystem_prompt = """\ntimeout = 5\n"""\ntimeout = 0\n', 7, "timeout"),
        (
            "[endpoints.a]\n" + url + 'model = "m"\nparams.stop = [\n  "quirks = 3",\n]\nquirks.system_role = "bad"\n',
            7,
            "bad",
        ),
        (
            "[endpoints.a]\n"
            + url
            + 'model = "m"\ndescription = """\n[endpoints.b]\n"""\n[endpoints.b]\n'
            + url
            + 'model = "m"\ntimeout = 0\n',
            10,
            "timeout",
        ),
        (
            '[endpoints."a.b"]\n'
            + url
            + 'model = "m"\nparams = { x = 1 }\n[endpoints.a]\n'
            + url
            + 'model = "m"\n'
            + "[endpoints.a.params]\ntemperature = -1\n",
            9,
            "temperature",
        ),
        ('[endpoints.a]\nmodel = "m"\nbase_url = "ftp://x"\n[endpoints.b]\nbase_url = "ftp://y"\n', 3, "http://"),
        ('[endpoints.a]\nmodel = "m"\n' + url + '[endpoints.b]\nkind = "nope"\n', 5, "has kind 'nope'"),
        ("[endpoints.a]\n" + url + 'modle = "m"\n', 3, "unknown field 'modle'"),
        ("[endpoints.a]\n" + url + "\n", 1, "is missing 'model'"),
        # CRLF line ends; a long value of another entry after the problem
        ("[endpoints.x]\r\n" + url.replace("\n", "\r\n") + 'model = "m"\r\n\r\nkind = "nope"\r\n', 5, "nope"),
        (
            "[endpoints.a]\n"
            + url
            + 'model = "m"\nkind = "nope"\n[endpoints.b]\ndescription = """\n'
            + "x\n" * 60
            + '"""\n',
            4,
            "nope",
        ),
    ]
    for text, line, message in cases:
        path.write_text(text)
        with pytest.raises(ep.EndpointConfigError) as info:
            ep.load_endpoints(SHIPPED, path)
        assert f"{path}, line {line}: " in str(info.value) and message in str(info.value), (text, str(info.value))


def test_a_toml_syntax_error_is_named_at_its_line_as_other_problems_are(tmp_path):
    path = tmp_path / "endpoints.user.toml"
    path.write_text('[endpoints.a]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m\n')
    with pytest.raises(ep.EndpointConfigError) as info:
        ep.load_endpoints(SHIPPED, path)
    assert str(info.value).startswith(f"{path}, line 3: not valid TOML: "), str(info.value)
    assert "(column " in str(info.value) and "(at line" not in str(info.value)


def test_every_problem_of_one_entry_is_named_at_its_line(tmp_path):
    """Only an entry's first problem was named: fixing it showed the next, one run at a time."""
    user = tmp_path / "user.toml"
    user.write_text(
        "[endpoints.e]\n"
        'kind = "nope"\n'
        "timeout = -1\n"
        'colour = "red"\n'
        'name = "a\\u200bb"\n'
        "max_retries = true\n"
        'base_url = "ftp://h\\nx"\n'  # a control character and no http: one problem for the field
        "quirks = { system_role = 'boss', think = 1 }\n"
        "params = { temperature = nan, max_tokens = 0 }\n"
    )
    with pytest.raises(ep.EndpointConfigError) as info:
        ep.load_endpoints(SHIPPED, user)
    problems = info.value.problems
    expected = [
        ("line 4", "unknown field 'colour'"),
        ("line 6", "field 'max_retries' has the wrong type (bool)"),
        ("line 8", "unknown quirk 'think'"),
        ("line 8", "quirk system_role 'boss'"),
        ("line 2", "kind 'nope'"),
        ("line 1", "is missing 'model'"),
        ("line 5", "field 'name' contains"),
        ("line 7", "field 'base_url' contains a control character"),
        ("line 3", "timeout must be more than 0"),
        ("line 9", "params temperature holds nan"),
        ("line 9", "params max_tokens must be a whole number"),
    ]
    assert len(problems) == len(expected), problems
    for problem, (line, what) in zip(problems, expected, strict=True):
        assert f"user.toml, {line}: [endpoints.e]" in problem and what in problem, (problem, what)
    # from the Settings form (no file yet): each problem names the endpoint
    with pytest.raises(ep.EndpointConfigError) as info:
        ep.save_user_endpoint(
            "f", {"base_url": "ftp://h", "model": "m\x1b", "timeout": 0.0}, tmp_path / "u.toml", path=SHIPPED
        )
    assert [p.split(" ", 3)[2] for p in info.value.problems] == ["'f':", "'f':", "'f':"], info.value.problems


def test_saving_where_the_user_files_folder_is_a_file_is_a_named_problem(tmp_path):
    """Settings showed a FileExistsError traceback when a folder of the user file's path was a file."""
    (tmp_path / "afile").write_text("x")
    user = tmp_path / "afile" / "endpoints.toml"
    with pytest.raises(
        ep.EndpointConfigError, match=r"afile/endpoints.toml: its folder cannot be made .*nothing was saved"
    ):
        ep.save_user_endpoint("mine", {"base_url": "http://127.0.0.1:1/v1", "model": "m"}, user, path=SHIPPED)
    assert (tmp_path / "afile").read_text() == "x"
