"""Access: the app listens on loopback unless the operator asks for more; exposed, it requires
sign-in (OpenID Connect or a shared password), records each person's votes under their own id,
and lets only an admin edit endpoints or test connections; a key sent to a new host needs a
confirmation naming the key variable and the host."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from db.engine import session_scope
from db.models import Vote
from lib import ui
from lib.providers.local_server import free_port
from tests.conftest import ROOT, as_read
from tests.test_cli import cli

pytestmark = pytest.mark.app
TEAM = {"parallax": {"password": "team-secret", "admin_password": "admin-secret"}}


def app(address: str = "0.0.0.0", secrets: dict | None = None) -> AppTest:
    st_config.set_option("server.address", address)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.secrets.update(secrets or {})
    return at


def sign_in(at: AppTest, name: str, password: str) -> AppTest:
    at.text_input(key="access_name").input(name)
    at.text_input(key="access_password").input(password)
    return at.button(key="access_submit").click().run()


def test_make_run_listens_on_loopback_unless_host_is_given():
    def command(*args: str) -> str:
        done = subprocess.run(["make", "-n", "run", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return next(line for line in done.stdout.splitlines() if "streamlit run" in line)

    assert "--server.address 127.0.0.1" in command()
    assert "--server.address 0.0.0.0" in command("HOST=0.0.0.0")
    assert "HOST=0.0.0.0" in (ROOT / "README.md").read_text()  # documented


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.integration
def test_the_app_started_without_flags_listens_on_loopback_only(tmp_path):
    """`streamlit run app.py` in the project folder reads .streamlit/config.toml: 127.0.0.1 only."""
    port = free_port()
    env = {**os.environ, "PARALLAX_DATA_DIR": str(tmp_path / "data")}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        addresses = _listening_addresses(port)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert addresses == {"0100007F"}, addresses  # 127.0.0.1 in /proc's byte order, nothing else


@pytest.mark.parametrize(("address", "exposed"), [("127.0.0.1", False), ("::1", False), ("localhost", False),
                                                   ("127.0.1.1", False), ("0.0.0.0", True), ("", True),
                                                   ("192.168.1.20", True), ("::", True)])  # fmt: skip
def test_only_loopback_addresses_count_as_local(address, exposed):
    assert ui.is_exposed(address) is exposed


def test_exposed_without_sign_in_configured_the_app_serves_nobody():
    at = app().run()
    assert not at.exception, at.exception
    assert any("no sign-in is set up" in as_read(e.value) for e in at.error)
    assert not at.chat_input  # no page was run


def test_locally_the_app_needs_no_sign_in_and_the_user_is_the_admin():
    at = app("127.0.0.1").run()
    assert not at.exception and at.chat_input
    assert at.session_state[ui.VOTER] == "local" and at.session_state[ui.ADMIN]


def test_exposed_the_app_asks_for_the_team_password_first():
    at = app(secrets=TEAM).run()
    assert not at.exception and not at.chat_input and at.button(key="access_submit")
    sign_in(at, "mallory", "guess")
    assert any("Wrong password" in as_read(e.value) for e in at.error) and not at.chat_input
    sign_in(at, "alice", "team-secret")
    assert not at.exception, at.exception
    assert at.chat_input and at.session_state[ui.VOTER] == "user:alice" and not at.session_state[ui.ADMIN]


def test_sign_in_is_required_on_loopback_too_once_configured():
    at = app("127.0.0.1", secrets=TEAM).run()
    assert at.button(key="access_submit") and not at.chat_input


def test_each_signed_in_person_votes_under_their_own_id(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.first]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n\n'
        f'[endpoints.second]\nbase_url = "{protocol_server.url}"\nmodel = "usage"\nkind = "local"\n'
    )
    at = sign_in(app(secrets=TEAM).run(), "alice", "team-secret")
    at.multiselect(key="compare_models").set_value(["first", "second"])
    at.chat_input(key="compare_prompt").set_value("who votes?").run()
    vote = next(b for b in at.button if b.key and b.key.startswith("vote_") and b.key.endswith("_a"))
    vote.click().run()
    assert not at.exception, at.exception
    with session_scope() as s:
        assert s.scalars(select(Vote.voter)).all() == ["user:alice"]


def test_only_an_admin_may_edit_endpoints_or_test_connections():
    at = sign_in(app(secrets=TEAM).run(), "bob", "team-secret")
    at.switch_page("views/settings.py").run()
    assert not at.exception, at.exception
    assert any("Only an admin" in as_read(i.value) for i in at.info)
    assert not [b for b in at.button if b.key in ("settings_test", "settings_save")]
    admin = sign_in(app(secrets=TEAM).run(), "carol", "admin-secret")
    admin.switch_page("views/settings.py").run()
    assert admin.button(key="settings_test") and admin.button(key="settings_save")


def test_with_openid_connect_people_sign_in_and_admins_are_named(monkeypatch):
    oidc = {
        "auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32},
        "parallax": {"admins": ["root@example.org"]},
    }
    at = app(secrets=oidc).run()
    assert at.button(key="access_login") and not at.chat_input  # st.login starts the OIDC flow
    at = app(secrets=oidc)
    at.user = {"is_logged_in": True, "email": "dana@example.org"}
    at.run()
    assert not at.exception, at.exception
    assert at.chat_input and at.session_state[ui.VOTER] == "oidc:dana@example.org" and not at.session_state[ui.ADMIN]
    at = app(secrets=oidc)
    at.user = {"is_logged_in": True, "email": "root@example.org"}
    at.run()
    assert at.session_state[ui.ADMIN]
    # a voter id is a key 100 characters wide (vote.voter): a longer address is its start and a hash,
    # never cut (two long addresses sharing 95 characters were one voter; one person's thumbs were two)
    voters = []
    for person in ("a" * 90 + "@one.example-university.edu", "a" * 90 + "@two.example-university.edu"):
        at = app(secrets=oidc)
        at.user = {"is_logged_in": True, "email": person}
        at.run()
        voters.append(at.session_state[ui.VOTER])
    assert all(len(v) == 100 for v in voters) and voters[0] != voters[1] and voters[0].startswith("oidc:aaaa")


def test_sending_a_key_to_a_new_host_asks_for_a_confirmation(tmp_path):
    at = app("127.0.0.1")
    at.switch_page("views/settings.py").run()
    at.selectbox(key="settings_edit_choice").set_value("gpt-4o").run()
    at.text_input(key="settings_form_gpt-4o_base_url").input("https://collector.example/v1")
    at.button(key="settings_save").click().run()
    assert not at.exception, at.exception
    warning = " ".join(as_read(w.value) for w in at.warning)
    assert "OPENAI_API_KEY" in warning and "collector.example" in warning
    assert not (tmp_path / "endpoints.user.toml").exists()
    at.button(key="settings_cancel_key").click().run()
    assert not at.warning and not (tmp_path / "endpoints.user.toml").exists()
    at.button(key="settings_save").click().run()
    at.button(key="settings_confirm_key").click().run()
    assert "collector.example" in (tmp_path / "endpoints.user.toml").read_text()


def save_new_endpoint(endpoint_id: str, key_env: str):
    """The Settings page after saving a new local endpoint with this key variable."""
    at = app("127.0.0.1")
    at.switch_page("views/settings.py").run()
    form = "settings_form_(new endpoint)"
    at.text_input(key=f"{form}_id").input(endpoint_id)
    at.text_input(key=f"{form}_base_url").input("http://127.0.0.1:9/v1")
    at.text_input(key=f"{form}_model").input("m")
    at.text_input(key=f"{form}_key_env").input(key_env)
    return at.button(key="settings_save").click().run()


def test_the_settings_form_refuses_a_key_variable_that_is_not_a_key(tmp_path):
    at = save_new_endpoint("exfil", "PARALLAX_DATABASE_URL")
    assert any("(key_env) must name" in as_read(e.value) for e in at.error)
    assert not (tmp_path / "endpoints.user.toml").exists()


def test_a_key_pasted_as_the_key_variable_is_never_shown(tmp_path):
    """The likeliest mistake in that field is the key itself: the refusal names the rule, never
    what was typed (it was echoed on the page and by `cli.py models`)."""
    secret = "sk-proj-ABCDEF1234567890secret"
    at = save_new_endpoint("pasted", secret)
    shown = [as_read(e.value) for e in at.error]
    assert any("(key_env) must name" in e for e in shown) and not any("1234567890" in e for e in shown), shown
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.pasted]\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\nkey_env = "{secret}"\n'
    )
    done = cli("models")
    assert done.returncode == 2 and "key_env must name" in done.stderr, done.stderr
    assert "1234567890" not in done.stderr + done.stdout


def test_a_display_name_with_a_control_character_is_not_saved(tmp_path):
    at = app("127.0.0.1")
    at.switch_page("views/settings.py").run()
    form = "settings_form_(new endpoint)"
    at.text_input(key=f"{form}_id").input("odd")
    at.text_input(key=f"{form}_name").input("Odd\x1b[2Jname")
    at.text_input(key=f"{form}_base_url").input("http://127.0.0.1:9/v1")
    at.text_input(key=f"{form}_model").input("m")
    at.button(key="settings_save").click().run()
    assert any("control character (ESC)" in as_read(e.value) for e in at.error)
    assert not (tmp_path / "endpoints.user.toml").exists()
    at.run()  # every page still loads
    assert not at.exception and not [e for e in at.error if "cannot be read" in e.value]
