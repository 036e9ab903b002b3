"""State that stays outside the pages: a CLI follow-up keeps its conversation's system prompt, and
local servers are probed briefly cached (so pages can ask on every rerun)."""

import json

from lib.providers.endpoints import Endpoint, endpoint_state, forget_probes
from tests.protocol_server import ProtocolServer
from tests.test_app_state import request_for
from tests.test_cli import cli


def test_cli_follow_up_keeps_the_conversations_system_prompt(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.echo]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n'
    )
    first = cli("ask", "cli first turn", "-m", "echo", "--system", "Answer in French.", "--json")
    assert first.returncode == 0, first.stderr
    conversation = str(json.loads(first.stdout)["conversation_id"])
    assert cli("ask", "cli follow-up", "-m", "echo", "--conversation", conversation, "--json").returncode == 0
    follow_up = request_for(protocol_server, "cli follow-up")
    assert follow_up["messages"][0] == {"role": "system", "content": "Answer in French."}
    # an explicit empty --system drops it
    assert cli("ask", "cli no system", "-m", "echo", "--conversation", conversation, "--system", "").returncode == 0
    assert request_for(protocol_server, "cli no system")["messages"][0]["role"] == "user"


def test_a_local_servers_probe_is_cached_briefly():
    forget_probes()
    server = ProtocolServer().__enter__()
    endpoint = Endpoint(id="local", name="Local", base_url=server.url, model="echo", kind="local")
    try:
        assert endpoint_state(endpoint).ready
    finally:
        server.__exit__(None, None, None)
    assert endpoint_state(endpoint).ready  # within the cache time the earlier answer stands
    forget_probes()
    state = endpoint_state(endpoint)
    assert (state.ready, state.status) == (False, "server down")
