"""Every code snippet of the README, run or checked as printed: the Python snippets are run (the storage API, your
own model behind ``create_app``, the routers mounted into your own app), each with its app's lifespan, as a server
runs it; the shell commands name the repository's scripts; the command-line summary matches the commands' --help.

The snippets use ``sqlite:///chats.db`` (relative to the working directory, here a temporary one); on PostgreSQL
the one URL is swapped for the test's database, and nothing else of the snippet is touched.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import itertools
import re
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI

from chatkeep.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SNIPPET_URL = "sqlite:///chats.db"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.DOTALL | re.MULTILINE)


def _python(heading: str) -> str:
    """The Python snippet that follows ``heading`` in the README."""
    snippet = re.search(r"^```python\n(.*?)^```", README[README.index(heading) :], re.DOTALL | re.MULTILINE)
    assert snippet is not None, heading
    return snippet.group(1)


@pytest.fixture
def snippet_url(backend: str, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URL the snippets' ``sqlite:///chats.db`` stands for here; the working directory is a fresh one."""
    monkeypatch.chdir(tmp_path)
    return SNIPPET_URL if backend == "sqlite" else database_url


def _module(source: str, url: str, tmp_path: Path) -> ModuleType:
    """The snippet as a module file of its own, imported."""
    assert SNIPPET_URL in source
    name = f"readme_snippet_{uuid.uuid4().hex}"
    path = tmp_path / f"{name}.py"
    path.write_text(source.replace(SNIPPET_URL, url))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


#: The heading each Python snippet of the README is under, and the test that runs it.
RUN_BY = {
    "## Use it as a library": "test_readme.py::test_the_storage_snippet",
    "### Your own model, agent and tools": "test_readme.py::test_the_own_model_snippet",
    "### Mount the routers into your FastAPI app, with your own auth": "test_readme.py::test_the_mount_snippet",
    "### Tools": "test_serve_model_server.py (the module, served with --tools)",
}


def test_every_python_snippet_is_run() -> None:
    for match in re.finditer(r"^```python\n", README, re.MULTILINE):
        heading = re.findall(r"^#+ .*$", README[: match.start()], re.MULTILINE)[-1]
        assert heading in RUN_BY, f"no test runs the Python snippet under {heading!r}: add one"


async def test_the_storage_snippet(snippet_url: str) -> None:
    source = _python("The storage API, without any web layer").replace(SNIPPET_URL, snippet_url)
    code = compile(source, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # as `python -m asyncio` runs it
    namespace: dict[str, Any] = {}
    await eval(code, namespace)
    store = namespace["store"]
    try:
        assert [m["id"] for m in namespace["branch"]] == ["u1", "a1"]
        assert [t.title for t in namespace["page"].items].count("Trip") >= 1
    finally:
        await store.close()


def _user(text: str) -> dict[str, Any]:
    return {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}


async def _chat(app: FastAPI, headers: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """One turn through the app, with its lifespan running; the stream and then the stored branch."""
    thread = f"readme-{uuid.uuid4().hex}"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=headers) as client:
            stream = await client.post("/api/chat", json={"id": thread, "messages": [_user("hello")]})
            assert stream.status_code == 200, stream.text
            stored = await client.get(f"/api/chat/{thread}/messages")
            assert stored.status_code == 200, stored.text
            return stream.text, stored.json()


async def test_the_own_model_snippet(snippet_url: str, tmp_path: Path) -> None:
    module = _module(_python("### Your own model, agent and tools"), snippet_url, tmp_path)
    threshold = gc.get_threshold()
    try:
        stream, branch = await _chat(module.app, {})
        # create_app serves your app; the process's garbage collector is still yours
        assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, 0)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert "You asked: hello" in stream
    assert [m["role"] for m in branch] == ["user", "assistant"]
    assert branch[1]["parts"][-1]["text"] == "You asked: hello"


async def test_the_mount_snippet(snippet_url: str, tmp_path: Path) -> None:
    module = _module(_python("### Mount the routers"), snippet_url, tmp_path)
    stream, branch = await _chat(module.app, {"x-user": "alice"})
    assert "[DONE]" in stream
    assert [m["role"] for m in branch] == ["user", "assistant"]
    assert branch[1]["parts"][-1]["text"] == "You said: hello"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=module.app), base_url="http://t") as client:
        assert (await client.get("/nowhere")).json() == {"detail": "Not Found"}  # the host's format, unchanged


def test_shell_snippets_name_real_scripts_and_options() -> None:
    """A line of a shell snippet runs one of the repository's scripts, or ``chatkeep`` with options it has."""
    lines = [line.split() for block in _blocks("bash") for line in block.splitlines() if line.strip()]
    assert lines, "the README has shell snippets"
    for words in lines:
        if words[0] == "chatkeep":
            path = list(itertools.takewhile(lambda w: re.fullmatch(r"[a-z]+", w), words[1:3]))
            result = CliRunner().invoke(main, [*path, "--help"])
            assert result.exit_code == 0, (words, result.output)
            for option in (w.split("=")[0] for w in words if w.startswith("--")):
                assert option in result.output, f"{' '.join(words)}: {option} is not an option"
            continue
        script = ROOT / words[0]
        assert script.is_file() and script.stat().st_mode & 0o111, f"{words[0]} is not an executable script"
        subprocess.run(["bash", "-n", str(script)], check=True)


def _usage_block() -> str:
    return next(block for block in _blocks("text") if block.startswith("chatkeep serve"))


def test_the_command_line_summary_matches_the_commands() -> None:
    """Every command of the summary exists with the options it shows, and ``serve`` shows all of its options."""
    runner = CliRunner()
    entries = re.split(r"\n(?=chatkeep )", _usage_block().strip())
    for entry in entries:
        usage = entry.split("#")[0]
        words = usage.split()
        path = [w for w in words[1:3] if re.fullmatch(r"[a-z]+", w)]
        result = runner.invoke(main, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        shown = set(re.findall(r"--[a-z-]+", usage))
        for option in shown:
            for name in option.split("/"):
                assert name in result.output, f"chatkeep {' '.join(path)}: {name} is not an option"
        if path == ["serve"]:
            offered = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", result.output)) - {"--help"}
            assert offered <= set(re.findall(r"--[a-z][a-z-]*", usage)), "serve options missing from the README"
