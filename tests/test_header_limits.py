"""``chatkeep serve`` bounds a request's line and headers (``CHATKEEP_MAX_HEADER_BYTES``): more is a 431 JSON error
sent before the rest is read, and the server goes on answering everyone else. Big but allowed heads (an 8 KB JWT,
several large heads on one kept-alive connection) and bodies beyond the head limit still work.

Against a real server subprocess, over raw sockets where a client library would refuse to send such a request.
The database plays no part here: SQLite only.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests._server import Server, running_server

SECRET = "a-secret-for-the-header-limit-tests-only"
LIMIT = 64 * 1024  # the default
#: Only a guard against a test hanging forever on a server that never answers; no assertion depends on it.
NO_HANG_S = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = f"sqlite:///{tmp_path_factory.mktemp('heads') / 'chatkeep.db'}"
    with running_server(database, env={"CHATKEEP_JWT_SECRET": SECRET}) as running:
        yield running


def _token(user: str, padding: int = 0) -> str:
    claims = {"sub": user, "exp": int(time.time()) + 600, "pad": "p" * (padding * 3 // 4)}  # base64: 4 chars per 3
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _user_message(message_id: str, size: int) -> dict[str, Any]:
    return {"id": message_id, "role": "user", "parts": [{"type": "text", "text": "t" * size}]}


def _connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=NO_HANG_S)
    return sock


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response, read until the server closes the connection (a refused one always is)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _assert_refused(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "headers_too_large"
    assert str(LIMIT) in error["message"]


def test_a_huge_header_is_refused_before_it_is_read(server: Server) -> None:
    """1 MiB of an ``Authorization`` header that never ends: the 431 arrives anyway (so the server did not wait for
    the rest), and the server answers others meanwhile and afterwards."""
    with _connect(server) as sock:
        sock.sendall(b"GET /api/threads HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ")
        sock.sendall(b"a" * (1024 * 1024))
        # The refused connection is still open (the server drops what it is still sent): others are served.
        assert httpx.get(f"{server.url}/healthz", timeout=NO_HANG_S).status_code == 200
        sock.shutdown(socket.SHUT_WR)
        _assert_refused(*_read_response(sock))
    assert httpx.get(f"{server.url}/healthz", timeout=NO_HANG_S).status_code == 200
    assert "line and headers pass 65536 bytes" in server.output()


def test_a_huge_request_line_is_refused(server: Server) -> None:
    with _connect(server) as sock:
        sock.sendall(b"GET /api/threads?q=" + b"x" * (2 * LIMIT) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _assert_refused(*_read_response(sock))


def test_many_headers_count_together(server: Server) -> None:
    """No single header is large; together they pass the limit."""
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(100))
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        _assert_refused(*_read_response(sock))


def test_big_allowed_heads_and_bodies_beyond_the_head_limit_work(server: Server) -> None:
    token = _token("alice", padding=8000)
    assert 8000 < len(token) < 9000
    with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=NO_HANG_S) as client:
        # Heads of 8 to 48 KB, one after another on one kept-alive connection: far more than the limit in all,
        # each within it.
        for size in (0, 20_000, 40_000):
            response = client.get("/api/threads", headers={"x-filler": "f" * size})
            assert response.status_code == 200, response.text
        # A body is not part of the head: 200 KB of text is stored whole.
        message = _user_message("m1", 200_000)
        created = client.post(
            "/api/threads/big/messages", json={"id": "m1", "parent_id": None, "format": "ai-sdk/v6", "content": message}
        )
        assert created.status_code == 204, created.text
        stored = client.get("/api/threads/big/messages/m1")
        assert stored.status_code == 200
        assert stored.json()["content"] == message


def test_pipelined_requests_each_have_the_whole_limit(server: Server) -> None:
    """Three requests sent at once on one connection, each head within the limit, all three together beyond it, the
    first with a body five times the limit: each is answered."""
    token = _token("bob").encode()
    body = json.dumps({"id": "p1", "parent_id": None, "format": "ai-sdk/v6", "content": _user_message("p1", 300_000)})
    head = b"Host: 127.0.0.1\r\nAuthorization: Bearer " + token + b"\r\nX-Filler: " + b"f" * 40_000 + b"\r\n"
    requests = [
        b"POST /api/threads/piped/messages HTTP/1.1\r\n" + head + b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body.encode()) + body.encode(),
        b"GET /api/threads/piped/messages HTTP/1.1\r\n" + head + b"\r\n",
        b"GET /healthz HTTP/1.1\r\n" + head + b"Connection: close\r\n\r\n",
    ]
    with _connect(server) as sock:
        sock.sendall(b"".join(requests))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", data) == [b"204", b"200", b"200"]
    assert b'"id":"p1"' in data


def test_the_limit_is_a_setting(tmp_path: Path) -> None:
    env = {"CHATKEEP_MAX_HEADER_BYTES": "8192"}
    with running_server(f"sqlite:///{tmp_path / 'chatkeep.db'}", env=env) as server:
        assert httpx.get(f"{server.url}/healthz", headers={"x-filler": "f" * 7000}).status_code == 200
        refused = httpx.get(f"{server.url}/healthz", headers={"x-filler": "f" * 9000})
        assert refused.status_code == 431
        assert "8192 bytes" in refused.json()["error"]["message"]
