"""What a user of the ``chatkeep`` command sees when the database URL is wrong (issue #13, points 1, 2 and 11).

Every command is run as the user runs it, ``python -m chatkeep …`` in a subprocess, with each bad configuration: a
database or a role that does not exist, a port nothing listens on, a wrong password (a local stand-in for a
PostgreSQL server that checks passwords: the test server trusts everyone), a SQLite file in a missing folder, a URL
that does not parse, a database chatkeep does not speak. Each must exit non-zero with a line naming the database
(host and port, or the file) and the cause, never a traceback, and never the password. Then: ``db current`` on a
database that is not migrated, the start-up line and logs of a running ``serve``, a database dropped under a
running server, export's timestamps, and an ``openai:`` model without a key whose server is not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import URL, make_url

from chatkeep.protocol import generate_id
from tests._server import free_port, running_server

PASSWORD = "s3cret-pw"
COMMANDS: dict[str, list[str]] = {
    "serve": ["serve", "--port", "1"],  # it stops before it listens
    "db upgrade": ["db", "upgrade"],
    "db current": ["db", "current"],
    "import": ["import", "--user", "u1", "-i", os.devnull],
    "export": ["export", "--user", "u1"],
}


def chatkeep(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[str]:
    """``python -m chatkeep *args``, started (the caller collects it with ``communicate``)."""
    return subprocess.Popen(
        [sys.executable, "-m", "chatkeep", *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = process.communicate(timeout=60)
    return process.returncode, output


def pg_where(url: URL) -> str:
    return f"{url.host or url.query['host']}:{url.port or 5432}"


class PasswordCheckingPostgres:
    """Answers every login as a PostgreSQL server that checks passwords answers a wrong one: it asks for the
    password, then refuses it with SQLSTATE 28P01 (the wire protocol's ErrorResponse)."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> PasswordCheckingPostgres:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._socket.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._socket.accept()
            except OSError:  # closed
                return
            with conn, contextlib.suppress(OSError):
                self._refuse(conn)

    @staticmethod
    def _refuse(conn: socket.socket) -> None:
        def read_startup() -> bytes:
            (length,) = struct.unpack("!i", conn.recv(4, socket.MSG_WAITALL))
            return conn.recv(length - 4, socket.MSG_WAITALL)

        body = read_startup()
        if struct.unpack("!i", body[:4])[0] == 80877103:  # SSLRequest: "no", then the real startup message
            conn.sendall(b"N")
            body = read_startup()
        words = body[4:].split(b"\0")  # name\0value\0… after the protocol version
        user = dict(zip(words[::2], words[1::2], strict=False))[b"user"].decode()
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        conn.recv(1, socket.MSG_WAITALL)
        (length,) = struct.unpack("!i", conn.recv(4, socket.MSG_WAITALL))
        conn.recv(length - 4, socket.MSG_WAITALL)  # the password
        fields = b"".join(
            key + value.encode() + b"\0"
            for key, value in (
                (b"S", "FATAL"),
                (b"V", "FATAL"),
                (b"C", "28P01"),
                (b"M", f'password authentication failed for user "{user}"'),
            )
        )
        conn.sendall(b"E" + struct.pack("!i", len(fields) + 5) + fields + b"\0")


@dataclass
class Bad:
    url: str
    names: list[str]  # what the message must name: the database's host and port or file, and the cause


@pytest.fixture
def bad_configurations(pg_admin_url: str, tmp_path: Path) -> Iterator[dict[str, Bad]]:
    admin = make_url(pg_admin_url)
    where = pg_where(admin)

    def pg(**parts: str | int) -> str:
        parts = {"username": "chatkeep_app", "password": PASSWORD, "database": "chatkeep", **parts}
        return admin.set(**parts).render_as_string(hide_password=False)  # type: ignore[arg-type]

    missing_db = f"nope_{generate_id().lower()}"
    missing_role = f"nobody_{generate_id().lower()}"
    dead_port = free_port()
    with PasswordCheckingPostgres() as checking:
        yield {
            "no such database": Bad(pg(database=missing_db), [where, f'database "{missing_db}" does not exist']),
            "no such role": Bad(pg(username=missing_role), [where, f'role "{missing_role}" does not exist']),
            "wrong port": Bad(pg(host="127.0.0.1", port=dead_port), [f"127.0.0.1:{dead_port}", "connection refused"]),
            "wrong password": Bad(
                pg(host="127.0.0.1", port=checking.port),
                [f"127.0.0.1:{checking.port}", 'password authentication failed for user "chatkeep_app"'],
            ),
            "sqlite folder missing": Bad(
                f"sqlite:///{tmp_path / 'missing' / 'chats.db'}", [str(tmp_path / "missing"), "does not exist"]
            ),
            "not a url": Bad(
                f"postgresql://chatkeep_app:{PASSWORD}@127.0.0.1:54x32/chatkeep",
                ["127.0.0.1:54x32", "is not valid", "port is not a number"],
            ),
            "unknown scheme": Bad(
                f"mysql://root:{PASSWORD}@127.0.0.1/chatkeep",
                ["mysql://root:***@127.0.0.1/chatkeep", "unsupported database 'mysql'"],
            ),
        }


@pytest.mark.parametrize(
    "configuration",
    [
        "no such database",
        "no such role",
        "wrong port",
        "wrong password",
        "sqlite folder missing",
        "not a url",
        "unknown scheme",
    ],
)
def test_every_command_names_the_database_and_the_cause(bad_configurations: dict[str, Bad], configuration: str) -> None:
    bad = bad_configurations[configuration]
    # the commands at once (each start costs a second of imports), the URL from the environment as a host sets it
    started = {name: chatkeep(*args, env={"DATABASE_URL": bad.url}) for name, args in COMMANDS.items()}
    results = {name: finish(process) for name, process in started.items()}
    for name, (code, output) in results.items():
        assert code == 1, (name, code, output)
        assert "Traceback" not in output, (name, output)
        assert PASSWORD not in output, (name, output)
        lines = output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (name, output)
        for expected in bad.names:
            assert expected in output, (name, expected, output)


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path, create_pg_database: Callable[[], str]) -> str:
    """A database chatkeep has never touched."""
    return f"sqlite:///{tmp_path / 'fresh.db'}" if backend == "sqlite" else create_pg_database()


def test_db_current_fails_until_the_schema_is_the_newest(fresh_url: str) -> None:
    code, output = finish(chatkeep("db", "current", "--database-url", fresh_url))
    assert code == 3, output
    assert "(empty database)" in output and "needs 'chatkeep db upgrade'" in output

    code, output = finish(chatkeep("db", "upgrade", "--database-url", fresh_url))
    assert code == 0, output
    code, output = finish(chatkeep("db", "current", "--database-url", fresh_url))
    assert code == 0 and "up to date" in output, output


def _admin(pg_admin_url: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(pg_admin_url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(params=["owner", "stranger"])
def password_url(request: pytest.FixtureRequest, pg_admin_url: str) -> Iterator[str]:
    """A database of its own and a role of its own whose password is :data:`PASSWORD`: its owner, or (``stranger``)
    a role that may connect but not create anything in it."""
    name = f"chatkeep_cli_{generate_id().lower()}"
    owner = "" if request.param == "stranger" else f" OWNER {name}"
    _admin(pg_admin_url, f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}'", f"CREATE DATABASE {name}{owner}")
    if not owner:  # (PostgreSQL 15's default; older ones let anyone create in ``public``)
        in_it = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
        _admin(in_it, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        url = make_url(pg_admin_url).set(username=name, password=PASSWORD, database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        _admin(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"DROP ROLE IF EXISTS {name}")


@pytest.mark.parametrize("password_url", ["stranger"], indirect=True)
def test_a_role_that_may_not_create_the_schema_is_told_what_to_do(password_url: str) -> None:
    started = [chatkeep(*COMMANDS[name], env={"DATABASE_URL": password_url}) for name in ("serve", "db upgrade")]
    for code, output in [finish(process) for process in started]:
        assert code == 1 and "Traceback" not in output and PASSWORD not in output, output
        assert "permission denied for schema public" in output and "OWNER" in output, output


@pytest.mark.parametrize("password_url", ["owner"], indirect=True)
def test_a_running_server_never_shows_the_password(password_url: str, pg_admin_url: str) -> None:
    url = make_url(password_url)
    with running_server(password_url) as server:
        start_line = server.output().splitlines()[0]
        assert f"database postgresql://{url.username}:***@{pg_where(url)}/{url.database}" in start_line
        assert httpx.post(f"{server.url}/api/threads", json={"title": "hi"}).status_code == 201

        # the database goes away under it: a server error naming nothing to the client, the cause in the log
        _admin(pg_admin_url, f'DROP DATABASE "{url.database}" WITH (FORCE)')
        for _ in range(5):  # a pooled connection the drop closed may be found broken first: a 503, then reconnects
            response = httpx.get(f"{server.url}/api/threads")
            if response.status_code != 503:
                break
        assert response.status_code == 500, response.text
        assert response.json()["error"]["code"] == "database_misconfigured"
        assert str(url.database) not in response.text and str(url.host) not in response.text
        output = server.output()
    assert f'database "{url.database}" does not exist' in output
    assert PASSWORD not in output, output


def test_export_writes_timestamps_as_the_api_does_and_imports_them_back(database_url: str, tmp_path: Path) -> None:
    with running_server(database_url) as server:
        created = httpx.post(f"{server.url}/api/threads", json={"title": "stamped"}).json()
        thread_id = created["id"]
        content = {"role": "user", "parts": [{"type": "text", "text": "hello"}]}
        stored = httpx.post(
            f"{server.url}/api/threads/{thread_id}/messages",
            json={"id": "m1", "parent_id": None, "format": "ai-sdk/v5", "content": content},
        )
        assert stored.status_code == 204, stored.text
        api_thread = httpx.get(f"{server.url}/api/threads/{thread_id}").json()

    exported = tmp_path / "export.jsonl"
    code, output = finish(chatkeep("export", "--user", "local", "-o", str(exported), "--database-url", database_url))
    assert code == 0, output
    record = next(r for r in map(json.loads, exported.read_text().splitlines()) if r["thread"]["id"] == thread_id)
    stamps = [record["thread"]["createdAt"], record["thread"]["updatedAt"]] + [
        m["created_at"] for m in record["messages"]
    ]
    assert all(stamp.endswith("Z") for stamp in stamps), stamps
    # the API's millisecond, then the microseconds the database keeps
    assert record["thread"]["createdAt"][:23] == api_thread["createdAt"][:23]

    code, output = finish(
        chatkeep(
            "import", "--user", "local", "-i", str(exported), "--on-conflict", "replace", "--database-url", database_url
        )
    )
    assert code == 0, output
    code, output = finish(chatkeep("export", "--user", "local", "--database-url", database_url))
    assert code == 0
    again = next(r for r in map(json.loads, output.splitlines()[:-1]) if r["thread"]["id"] == thread_id)
    assert again == record


def test_an_openai_model_without_a_key_or_a_server_says_which_server(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    env = {"CHATKEEP_MODEL": "openai:gpt-test", "OPENAI_BASE_URL": dead, "OPENAI_API_KEY": ""}
    with running_server(f"sqlite:///{tmp_path / 'chatkeep.db'}", env=env) as server:
        user = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
        response = httpx.post(f"{server.url}/api/chat", json={"id": "t1", "messages": [user]}, timeout=60)
        errors = [
            json.loads(event.removeprefix("data: "))
            for event in response.text.split("\n\n")
            if event.startswith("data: {")
        ]
        errors = [chunk for chunk in errors if chunk["type"] == "error"]
        startup = server.output()
    assert errors and f"could not connect to the model server at {dead}" in errors[0]["errorText"], response.text
    warning = next(line for line in startup.splitlines() if "OPENAI_API_KEY" in line)
    assert "OPENAI_API_KEY is not set" in warning and dead in warning


def test_scripts_run_keeps_the_users_directory(tmp_path: Path) -> None:
    """``scripts/run`` from anywhere: the virtualenv is the repository's, ``chatkeep.db`` lands where the user is.
    (A copy of the script in a stand-in repository whose ``.venv`` is set up already: its ``chatkeep`` is this
    Python's.)"""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    script = repo / "scripts" / "run"
    script.write_text((Path(__file__).parents[1] / "scripts" / "run").read_text())
    script.chmod(0o755)
    (repo / "pyproject.toml").write_text("")
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "chatkeep").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m chatkeep "$@"\n')
    (bin_dir / "chatkeep").chmod(0o755)
    (repo / ".venv" / ".chatkeep-installed").touch()
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [str(script), "--port", str(port)], cwd=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                threading.Event().wait(0.1)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert (home / "chatkeep.db").is_file(), output
    assert not (repo / "chatkeep.db").exists()
    assert f"database sqlite:///{home / 'chatkeep.db'}" in output
