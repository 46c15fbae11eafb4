"""Real JavaScript clients against a real ``chatkeep serve`` process.

* The fixture corpus passes the real ``ai`` 5, 6 and 7 ``validateUIMessages`` (so the round-trip tests use
  messages the SDKs themselves accept).
* ``POST /api/chat`` with the real ``ai`` clients (strict 5.0.100, 6.0.100, 7.0.31 and the latest 5, 6 and 7):
  every chunk passes that version's schema and the message ``readUIMessageStream`` builds equals the stored one.
* Resume and stop with the real ``AbstractChat`` of those versions (``useChat({resume: true})``).
* Tool approval (``addToolApprovalResponse``) with the real ``AbstractChat`` of ai 6 and 7, against a library-mode
  app whose model asks to refund an order.
* The seed's assistant-ui adapter code, unchanged, lists, initializes, renames, archives, unarchives,
  deletes and fetches threads and loads/appends a branched history through the real ``ai-sdk/v6`` format
  adapter, on SQLite and PostgreSQL, without and with JWT authentication.

Needs ``npm ci`` in tests/js (the README's test command does it).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from tests._server import running_server
from tests._shop_app import ORDER

JS = Path(__file__).parent / "js"
pytestmark = pytest.mark.node


@pytest.fixture(scope="module", autouse=True)
def _node_modules() -> None:
    if not (JS / "node_modules" / "ai5").is_dir():
        pytest.fail("tests/js/node_modules is missing: run 'npm ci --prefix tests/js' (scripts/test does it)")


def _node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", *args], cwd=JS, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def server_database_url(backend: str, tmp_path: Path, create_pg_database: Callable[[], str]) -> str:
    return f"sqlite:///{tmp_path / 'served.db'}" if backend == "sqlite" else create_pg_database()


def test_fixture_corpus_is_valid_for_the_real_sdks() -> None:
    result = _node("validate-fixtures.mjs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].endswith(" 0 failed")


def test_seed_adapters_against_a_running_server(server_database_url: str) -> None:
    with running_server(server_database_url) as server:
        result = _node("seed-adapters.mjs", server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "15 passed, 0 failed", result.stdout


def test_ai_sdk_clients_against_a_running_server(server_database_url: str) -> None:
    with running_server(server_database_url, env={"CHATKEEP_DEMO_DELAY_MS": "0"}) as server:
        result = _node("chat-clients.mjs", server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "48 passed, 0 failed", result.stdout


def test_ai_sdk_clients_resume_and_stop(server_database_url: str) -> None:
    """``useChat({resume: true})``: a reload during a reply, a resume after it ended, and a stop, with the
    real ``AbstractChat`` of every client version; exactly one copy of the reply on every one of them."""
    with running_server(server_database_url, env={"CHATKEEP_DEMO_DELAY_MS": "20"}) as server:
        result = _node("resume-clients.mjs", server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "18 passed, 0 failed", result.stdout


def test_ai_sdk_clients_approve_a_tool_call(server_database_url: str, tmp_path: Path) -> None:
    """``addToolApprovalResponse`` + ``sendAutomaticallyWhen`` with the real ``AbstractChat`` of ai 6 and 7: the
    same assistant message continues, and the refund runs once per client, with the input the model gave."""
    refunds = tmp_path / "refunds.jsonl"
    env = {"SHOP_REFUNDS": str(refunds)}
    with running_server(server_database_url, env=env, app_factory="tests._shop_app:create") as server:
        result = _node("approval-clients.mjs", server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "4 passed, 0 failed", result.stdout
    assert [json.loads(line) for line in refunds.read_text().splitlines()] == [ORDER] * 4


def test_seed_adapters_with_jwt_auth(tmp_path: Path) -> None:
    secret = "a-jwt-secret-for-the-seed-adapter-test"
    token = jwt.encode({"sub": "seed-user", "exp": int(time.time()) + 600}, secret, algorithm="HS256")
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    with running_server(url, env={"CHATKEEP_JWT_SECRET": secret}) as server:
        assert httpx.get(f"{server.url}/api/threads").status_code == 401
        result = _node("seed-adapters.mjs", server.url, env={"CHATKEEP_TOKEN": token})
        assert result.returncode == 0, result.stdout + result.stderr
        other = jwt.encode({"sub": "someone-else", "exp": int(time.time()) + 600}, secret, algorithm="HS256")
        headers = {"authorization": f"Bearer {other}"}
        assert httpx.get(f"{server.url}/api/threads", headers=headers).json() == []
