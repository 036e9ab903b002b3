"""Shared fixtures: a fresh SQLite file per test, the real embedded server once per session,
and the protocol test server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from db.engine import dispose_all  # noqa: E402
from lib.providers import local_server  # noqa: E402
from lib.providers.endpoints import Endpoint, Quirks  # noqa: E402
from tests.protocol_server import ProtocolServer  # noqa: E402


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own data folder and database, and no stray keys."""
    monkeypatch.setenv("PARALLAX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PARALLAX_DATABASE_URL", f"sqlite:///{tmp_path / 'data' / 'test.db'}")
    monkeypatch.setenv("PARALLAX_USER_ENDPOINTS", str(tmp_path / "endpoints.user.toml"))
    monkeypatch.setenv("PARALLAX_SECRETS", str(tmp_path / "secrets.toml"))
    dispose_all()
    yield
    dispose_all()


@pytest.fixture(scope="session")
def embedded_url(tmp_path_factory):
    """The real llama.cpp server with SmolLM2, started once for the whole session."""
    state = tmp_path_factory.mktemp("llama")
    os.environ["PARALLAX_DATA_DIR"] = str(state)
    proc, url = local_server.start(timeout=120)
    yield url
    local_server.stop(proc)
    log = state / "local_server.log"
    if proc.returncode not in (0, -15, None) and log.exists():
        print(log.read_text()[-3000:])


@pytest.fixture
def embedded(embedded_url, monkeypatch):
    """Points embedded endpoints at the session's server."""
    monkeypatch.setenv("PARALLAX_LOCAL_URL", embedded_url)
    return embedded_url


@pytest.fixture(scope="session")
def protocol_server():
    """The OpenAI-protocol test server, for faults and provider quirks."""
    with ProtocolServer() as server:
        yield server


def fake_endpoint(url: str, model: str, endpoint_id: str | None = None, **kwargs) -> Endpoint:
    """An endpoint on the protocol test server whose model name picks the behaviour."""
    quirks = kwargs.pop("quirks", Quirks())
    return Endpoint(
        id=endpoint_id or model,
        name=f"Fake {model}",
        base_url=url,
        model=model,
        kind="local",
        timeout=kwargs.pop("timeout", 10.0),
        max_retries=kwargs.pop("max_retries", 0),
        quirks=quirks,
        **kwargs,
    )


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or skip the test with a message when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} is absent")
    return path


@pytest.fixture(autouse=True)
def loopback_app():
    """AppTests run as `make run` serves the app: on 127.0.0.1, where no sign-in is needed (an
    unset address means every interface, which requires one)."""
    from streamlit import config as st_config

    st_config.set_option("server.address", "127.0.0.1")
    yield
    st_config.set_option("server.address", "127.0.0.1")


def as_read(markdown: str) -> str:
    """Markdown source as a reader sees it: backslash escapes of punctuation removed."""
    import re

    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown)
