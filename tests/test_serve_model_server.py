"""What a real model server receives from ``chatkeep serve --model openai:<model>``: only the tools given with
``--tools`` (never the demo model's made-up ``get_weather``), the system prompt first, then the conversation in order;
and that a tool given with ``--tools`` is offered, called and its result stored. ``chatkeep serve`` runs as a real
subprocess, configured as a user would (flags, environment), against the local fake OpenAI-compatible server of
tests/fake_openai.py, which records every request it gets.

Reusable: the ``model_server`` fixture (a fresh script and record per test) and ``served_database_url`` (a database
of its own per test, SQLite and PostgreSQL) with ``running_server(url, env=model_server.env(), args=[...])``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from chatkeep.api import create_app
from chatkeep.cli import main
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests._server import running_server
from tests.fake_openai import FakeOpenAI, FakeResponse

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def _fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def model_server(_fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The fake model server, with nothing queued and nothing recorded yet."""
    _fake_openai.reset()
    return _fake_openai


@pytest.fixture
def served_database_url(backend: str, tmp_path: Path, create_pg_database: Callable[[], str]) -> str:
    """A database of its own for one ``chatkeep serve`` subprocess (it migrates it on start)."""
    return f"sqlite:///{tmp_path / 'served.db'}" if backend == "sqlite" else create_pg_database()


def user(message_id: str, text: str) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": text}]}


def chat(client: httpx.Client, thread_id: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``POST /api/chat`` as ``useChat`` sends it; the stream's chunks, checked to have no error."""
    response = client.post("/api/chat", json={"id": thread_id, "messages": messages})
    assert response.status_code == 200, response.text
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e.strip()]
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    assert not [c for c in chunks if c["type"] == "error"], chunks
    return chunks


def texts(message: dict[str, Any]) -> str:
    return "".join(part["text"] for part in message["parts"] if part["type"] == "text")


def test_a_real_model_gets_the_system_prompt_and_the_history_in_order_and_no_made_up_tool(
    model_server: FakeOpenAI, served_database_url: str
) -> None:
    env = {**model_server.env(), "CHATKEEP_SYSTEM_PROMPT": "Answer in one sentence."}
    model_server.enqueue(FakeResponse(text="Hello, Ada."), FakeResponse(text="Your name is Ada."))
    with (
        running_server(served_database_url, env=env, args=["--model", "openai:test-model"]) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        chat(client, "t1", [user("u1", "My name is Ada.")])
        history = client.get("/api/chat/t1/messages").json()
        chat(client, "t1", [*history, user("u2", "What is my name?")])
        stored = client.get("/api/chat/t1/messages").json()

    first, second = model_server.requests
    for request in (first, second):
        assert request["model"] == "test-model"
        assert "tools" not in request  # the demo's get_weather is the demo's; no tools were given
    system = {"role": "system", "content": "Answer in one sentence."}
    assert first["messages"] == [system, {"role": "user", "content": "My name is Ada."}]
    assert second["messages"] == [
        system,
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    assert [(m["role"], texts(m)) for m in stored] == [
        ("user", "My name is Ada."),
        ("assistant", "Hello, Ada."),
        ("user", "What is my name?"),
        ("assistant", "Your name is Ada."),
    ]


def _readme_tools_example() -> tuple[str, list[str]]:
    """The README's Tools section: the module it shows and the command line that serves it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n### Tools\n", 1)[1].split("\n### ", 1)[0]
    module = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    command = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert module is not None and command is not None, "the README's Tools section shows a module and a command"
    return module.group(1), shlex.split(command.group(1), comments=True)


def test_the_readmes_tools_are_offered_to_the_model_called_and_stored(model_server: FakeOpenAI, tmp_path: Path) -> None:
    """As printed: the module saved as my_tools.py, the command run with the installed ``chatkeep`` script in the
    folder that holds it."""
    module, command = _readme_tools_example()
    (tmp_path / "my_tools.py").write_text(module)
    assert command[:2] == ["chatkeep", "serve"]
    script = Path(sys.executable).with_name("chatkeep")
    assert script.is_file(), "chatkeep is installed in the environment that runs the tests"
    model_server.enqueue(
        FakeResponse(tool_calls=[("call_1", "lookup_order", '{"order_id": "A1"}')]),
        FakeResponse(text="Order A1 has shipped."),
    )
    database_url = f"sqlite:///{tmp_path / 'chatkeep.db'}"
    with (
        running_server(
            database_url, env=model_server.env(), chatkeep=[str(script)], args=command[2:], cwd=tmp_path
        ) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        chat(client, "t1", [user("u1", "Where is order A1?")])
        reply = client.get("/api/chat/t1/messages").json()[-1]

    first, second = model_server.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup_order"]
    assert first["tools"][0]["function"]["description"] == "Find an order by id."
    assert first["tools"] == second["tools"]
    answer = second["messages"][-1]
    assert answer["role"] == "tool" and answer["tool_call_id"] == "call_1"
    assert json.loads(answer["content"]) == {"order_id": "A1", "status": "shipped"}
    call = next(part for part in reply["parts"] if part["type"] == "tool-lookup_order")
    assert call["state"] == "output-available"
    assert call["input"] == {"order_id": "A1"}
    assert call["output"] == {"order_id": "A1", "status": "shipped"}
    assert texts(reply) == "Order A1 has shipped."


async def test_the_demo_model_keeps_its_own_tool_beside_those_given(store: ChatStore) -> None:
    settings = Settings(migrate_on_start=False, tools="tests.serve_tools:tools")
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        response = await client.post("/api/chat", json={"id": "t1", "messages": [user("u1", "Weather in Oslo?")]})
        assert response.status_code == 200
        reply = (await client.get("/api/chat/t1/messages")).json()[-1]
    assert [part["state"] for part in reply["parts"] if part["type"] == "tool-get_weather"] == ["output-available"]


@pytest.mark.parametrize(
    ("tools", "problem"),
    [
        ("no_such_module:tools", "cannot import 'no_such_module': ModuleNotFoundError: No module named"),
        (
            "tests.serve_tools_broken:tools",
            "cannot import 'tests.serve_tools_broken': RuntimeError: set SHOP_API_URL first",
        ),
        ("tests.serve_tools", "expected an import path 'package.module:attribute'"),
        ("tests.serve_tools:nothing", "module 'tests.serve_tools' has no attribute 'nothing'"),
        ("tests.serve_tools:not_tools", "expected a @tool function, a list of them or a ToolRegistry, not a value"),
        ("tests.serve_tools:forgot_the_decorator", "item 1 is not a tool: undecorated, a plain function"),
        ("tests.serve_tools:twice", "two tools are named 'lookup_order'"),
        (
            "tests.serve_tools:tools,tests.serve_tools:registry",
            "a tool named 'lookup_order' comes from 'tests.serve_tools:tools' already",
        ),
    ],
    ids=[
        "no-module",
        "module-fails",
        "no-colon",
        "no-attribute",
        "not-tools",
        "plain-function",
        "twice",
        "two-paths",
    ],
)
@pytest.mark.parametrize("given_as", ["flag", "environment"])
def test_tools_that_are_not_give_one_clear_line(tools: str, problem: str, given_as: str, tmp_path: Path) -> None:
    # Beyond loopback without authentication: a serve that ignored its tools would stop at that refusal, not serve.
    args = [
        "serve",
        "--model",
        "openai:test-model",
        "--host",
        "0.0.0.0",
        "--database-url",
        f"sqlite:///{tmp_path}/c.db",
    ]
    if given_as == "flag":
        result = CliRunner().invoke(main, [*args, "--tools", tools])
    else:
        result = CliRunner().invoke(main, args, env={"CHATKEEP_TOOLS": tools})
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    [line] = result.output.splitlines()
    assert line.startswith("Error: tools ") and problem in line
    assert tools.split(",")[-1] in line  # it names the path at fault


def test_no_traceback_reaches_the_terminal(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatkeep",
            "serve",
            "--host",
            "0.0.0.0",
            "--database-url",
            f"sqlite:///{tmp_path}/c.db",
        ],
        env={**os.environ, "CHATKEEP_TOOLS": "tests.serve_tools:forgot_the_decorator"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: tools 'tests.serve_tools:forgot_the_decorator': item 1 is not a tool: undecorated, a plain function "
        "(decorate it with @tool from chatkeep.tools)"
    ]
