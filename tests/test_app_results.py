"""AppTest for the arena (names hidden until the vote), leaderboard and export pages."""

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db import conversations, votes
from db.engine import session_scope
from db.models import Conversation, Vote
from lib.providers.endpoints import Endpoint
from lib.providers.stream import Outcome
from tests.conftest import ROOT

pytestmark = pytest.mark.app


def app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)


def test_blind_battle_hides_names_until_the_vote_then_reveals_them(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.secret-one]\nname = "Zebra Model"\nbase_url = "{protocol_server.url}"\nmodel = "echo"\n'
        f'kind = "local"\n\n[endpoints.secret-two]\nname = "Yak Model"\nbase_url = "{protocol_server.url}"\n'
        'model = "usage"\nkind = "local"\n'
    )
    at = app()
    at.switch_page("views/arena.py").run()
    at.multiselect(key="arena_models").set_value(["secret-one", "secret-two"]).run()
    at.button(key="arena_new").click().run()
    at.chat_input(key="arena_prompt").set_value("which model are you").run()
    assert not at.exception

    def main_text() -> str:  # the main area only: the sidebar lists the arena's pool by design
        return " ".join(str(getattr(e, "value", "")) for e in at.main)

    before = main_text()
    assert "Model A" in before and "Model B" in before
    assert "Zebra" not in before and "Yak" not in before
    at.button(key="arena_vote_b").click().run()
    assert not at.exception
    after = main_text()
    assert "Zebra Model" in after and "Yak Model" in after
    with session_scope() as s:
        vote = s.scalars(select(Vote)).one()
        conv = s.scalars(select(Conversation)).one()
    assert vote.blind and vote.winner == "b" and not vote.identity_leaked
    assert conv.mode == "arena" and conv.meta["revealed"]


def _votes(n_models: int = 3) -> None:
    endpoints = [Endpoint(id=f"m{i}", name=f"Model {i}", base_url="http://h/v1", model="x") for i in range(n_models)]
    with session_scope() as s:
        for i in range(n_models):
            for j in range(i + 1, n_models):
                for winner in ("a", "a", "b", "tie"):
                    conv = conversations.create_conversation(s, mode="arena")
                    ex = conversations.add_exchange(s, conv.id, "q", language="en")
                    ra = conversations.add_response(s, ex.id, "a", endpoints[i], Outcome(text="x", status="ok"))
                    rb = conversations.add_response(s, ex.id, "b", endpoints[j], Outcome(text="y", status="ok"))
                    votes.add_vote(s, ex.id, ra.id, rb.id, winner, blind=True)


def test_leaderboard_renders_ratings_from_stored_votes():
    _votes()
    at = app()
    at.switch_page("views/leaderboard.py").run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "rating" in df.value.columns)
    assert list(table["model"]) == ["Model 0", "Model 1", "Model 2"]
    assert table["battles"].tolist() == [8, 8, 8]
    assert len(at.get("plotly_chart")) == 2


def test_the_leaderboard_page_counts_every_vote_by_default_as_the_command_line_does():
    """The page's dates started a year back: older votes dropped off it in silence."""
    from datetime import timedelta

    from sqlalchemy import update

    from db.models import Vote, utcnow

    _votes()
    with session_scope() as s:
        s.execute(update(Vote).values(created_at=utcnow() - timedelta(days=800)))
    at = app()
    at.switch_page("views/leaderboard.py").run()
    assert not at.exception and at.date_input(key="lb_dates").value in ((), None, [])
    table = next(df.value for df in at.dataframe if "rating" in df.value.columns)
    assert table["battles"].tolist() == [8, 8, 8]


def test_leaderboard_with_no_votes_explains_instead_of_crashing():
    at = app()
    at.switch_page("views/leaderboard.py").run()
    assert not at.exception
    assert any("Nothing to rank" in i.value for i in at.info)


def test_export_page_prepares_a_download():
    _votes(2)
    at = app()
    at.switch_page("views/export.py").run()
    at.button(key="export_go").click().run()
    assert not at.exception
    assert any("rows ready" in s.value for s in at.success)


def test_a_model_that_names_itself_flags_the_battle_as_identity_leaked(protocol_server, tmp_path):
    (tmp_path / "endpoints.user.toml").write_text(
        f'[endpoints.one]\nbase_url = "{protocol_server.url}"\nmodel = "echo"\nkind = "local"\n\n'
        f'[endpoints.two]\nbase_url = "{protocol_server.url}"\nmodel = "usage"\nkind = "local"\n'
    )
    at = app()
    at.switch_page("views/arena.py").run()
    at.multiselect(key="arena_models").set_value(["one", "two"]).run()
    at.button(key="arena_new").click().run()
    at.chat_input(key="arena_prompt").set_value("I am Qwen, created by Alibaba Cloud.").run()  # both echo it
    at.button(key="arena_vote_tie").click().run()
    assert not at.exception
    with session_scope() as s:
        vote = s.scalars(select(Vote)).one()
    assert vote.identity_leaked and vote.winner == "tie"
    assert any("identity-leaked" in w.value for w in at.warning)
