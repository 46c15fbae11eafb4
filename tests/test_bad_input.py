"""Bad requests are refused with the right status and error code, say where the problem is, and store nothing.

Covers every invalid UIMessage of ``tests/fixtures/invalid_ui_messages.json`` (422 with the exact ``loc``),
malformed and truncated JSON, ``NaN``, deep nesting and lone surrogates (400 ``invalid_json``), wrong JSON types
and unknown keys (422 ``validation_error``), NUL characters anywhere (422), oversized bodies (413, with and without
``Content-Length``), non-JSON content types (415), over-long ids, and ``ai-sdk/*`` content that is not a
UIMessage. After each refusal the row counts and the existing thread are exactly as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest

from chatkeep.api import create_app
from chatkeep.settings import Settings
from chatkeep.store import ChatStore
from tests.conftest import count_rows, load_fixture

INVALID: list[dict[str, Any]] = load_fixture("invalid_ui_messages.json")


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "text": text}]}


def _location(loc: list[str | int]) -> str:
    """A fixture's ``loc`` as the API writes it (``ValidationIssue.location``): ``parts[0].text``."""
    out = ""
    for item in loc:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else item)
    return out


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"]
    error = cast(dict[str, Any], body["error"])
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    for detail in error.get("details", []):
        assert set(detail) == {"loc", "message", "type"}
    return error


def _locs(error: dict[str, Any]) -> list[str]:
    return [detail["loc"] for detail in error.get("details", [])]


@dataclass
class Seeded:
    """A thread with a typed and an opaque message, and a snapshot of everything stored."""

    client: httpx.AsyncClient
    store: ChatStore
    thread: str
    counts: dict[str, int]
    state: dict[str, Any]

    @property
    def messages(self) -> str:
        return f"/api/threads/{self.thread}/messages"

    async def snapshot(self) -> dict[str, Any]:
        thread = await self.client.get(f"/api/threads/{self.thread}")
        rows = await self.client.get(self.messages)
        listed = await self.client.get("/api/threads")
        return {"thread": thread.json(), "rows": rows.json(), "list": listed.json()}

    async def assert_unchanged(self) -> None:
        assert await count_rows(self.store) == self.counts
        assert await self.snapshot() == self.state


@pytest.fixture
async def seeded(client: httpx.AsyncClient, store: ChatStore) -> AsyncIterator[Seeded]:
    created = await client.post("/api/threads", json={"title": "Untouched", "custom": {"k": 1}})
    thread = created.json()["id"]
    for row in (
        {"id": "u1", "parent_id": None, "format": "ai-sdk/v6", "content": _user("Hi")},
        {"id": "x1", "parent_id": "u1", "format": "aui/v0", "content": {"role": "assistant", "content": []}},
    ):
        response = await client.post(f"/api/threads/{thread}/messages", json=row)
        assert response.status_code == 204, response.text
    seeded = Seeded(client, store, thread, {}, {})
    seeded.counts = await count_rows(store)
    seeded.state = await seeded.snapshot()
    yield seeded
    await seeded.assert_unchanged()


class TestInvalidUIMessages:
    @pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
    async def test_refused_with_the_location_of_the_problem(self, seeded: Seeded, case: dict[str, Any]) -> None:
        content = {k: v for k, v in case["message"].items() if k != "id"}
        row = {"id": case["message"].get("id"), "parent_id": None, "format": "ai-sdk/v6", "content": content}
        where = _location(case["loc"])
        # The message id is a field of the row; everything else is inside ``content``.
        expected, code = ("body.id", "validation_error") if where == "id" else (f"content.{where}", "invalid_message")

        for path in (seeded.messages, "/api/threads/fresh-thread/messages"):
            error = _error(await seeded.client.post(path, json=row), 422, code)
            assert any(loc == expected or loc.endswith(f".{expected}") for loc in _locs(error)), (
                f"{case['why']}: expected a detail at {expected!r}, got {_locs(error)}"
            )
        _error(await seeded.client.get("/api/threads/fresh-thread"), 404, "thread_not_found")

    @pytest.mark.parametrize("fmt", ["ai-sdk/v5", "ai-sdk/v6"])
    @pytest.mark.parametrize(
        "name", ["text_missing_text", "tool_output_available_missing_output", "role_tool", "user_empty_parts"]
    )
    async def test_an_update_with_an_invalid_message_keeps_the_stored_one(
        self, seeded: Seeded, name: str, fmt: str
    ) -> None:
        case = next(c for c in INVALID if c["name"] == name)
        content = {k: v for k, v in case["message"].items() if k != "id"}
        for method in ("PUT", "PATCH"):
            response = await seeded.client.request(
                method, f"{seeded.messages}/u1", json={"format": fmt, "content": content}
            )
            error = _error(response, 422, "invalid_message")
            assert f"content.{_location(case['loc'])}" in _locs(error)


class TestNotAUIMessage:
    @pytest.mark.parametrize("fmt", ["ai-sdk/v5", "ai-sdk/v6"])
    @pytest.mark.parametrize(
        ("content", "locs"),
        [
            ({"foo": "bar"}, {"content.role", "content.parts"}),
            ({"role": "assistant", "content": [{"type": "text", "text": "aui/v0 shape"}]}, {"content.parts"}),
            ({"role": "user", "parts": {"type": "text", "text": "x"}}, {"content.parts"}),
            ({"role": "user", "parts": [{"kind": "text", "value": "x"}]}, {"content.parts[0]"}),
        ],
        ids=["unrelated-object", "aui-v0-shape", "parts-not-a-list", "part-without-type"],
    )
    async def test_ai_sdk_format_with_other_content_is_422(
        self, seeded: Seeded, fmt: str, content: dict[str, Any], locs: set[str]
    ) -> None:
        row = {"id": "m", "parent_id": "u1", "format": fmt, "content": content}
        error = _error(await seeded.client.post(seeded.messages, json=row), 422, "invalid_message")
        assert locs <= set(_locs(error))


def _deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _deep_array(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _row_with(content: bytes) -> bytes:
    return b'{"id": "m", "parent_id": null, "format": "my-app/v1", "content": ' + content + b"}"


MALFORMED: dict[str, bytes] = {
    "trailing-comma": b'{"id": "m", "format": "my-app/v1", "content": {},}',
    "unquoted-key": b'{id: "m", "format": "my-app/v1", "content": {}}',
    "single-quotes": b"{'id': 'm', 'format': 'my-app/v1', 'content': {}}",
    "truncated": b'{"id": "m", "format": "my-app/v1", "content": {"a": ',
    "truncated-string": b'{"id": "m", "format": "my-app/v1", "content": {"a": "unterminated',
    "only-an-opening-brace": b"{",
    "trailing-garbage": b'{"id": "m", "format": "my-app/v1", "content": {}} x',
    "two-documents": b'{"id": "m", "format": "my-app/v1", "content": {}}{"id": "n"}',
    "not-json-at-all": b"hello",
    "nan": _row_with(b'{"x": NaN}'),
    "infinity": _row_with(b'{"x": Infinity}'),
    "minus-infinity": _row_with(b'{"x": -Infinity}'),
    "deep-objects-10000": _row_with(_deep_object(10_000)),
    "deep-arrays-10000": _row_with(b'{"a": ' + _deep_array(10_000) + b"}"),
    "deep-body-10000": _deep_array(10_000),
    "deep-objects-300": _row_with(_deep_object(300)),
    "lone-surrogate": _row_with(b'{"x": "\\ud800"}'),
    "invalid-utf8": _row_with(b'{"x": "\xff\xfe"}'),
    "control-character-in-string": _row_with(b'{"x": "a\x01b"}'),
}


class TestMalformedJSON:
    @pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
    async def test_posting_a_message(self, seeded: Seeded, body: bytes) -> None:
        for content_type in ("application/json", "text/plain"):
            response = await seeded.client.post(seeded.messages, content=body, headers={"content-type": content_type})
            _error(response, 400, "invalid_json")

    async def test_posting_into_a_new_thread_creates_nothing(self, seeded: Seeded) -> None:
        for body in MALFORMED.values():
            _error(await seeded.client.post("/api/threads/fresh-thread/messages", content=body), 400, "invalid_json")

    @pytest.mark.parametrize("name", ["truncated", "nan", "deep-objects-10000", "lone-surrogate"])
    async def test_other_routes(self, seeded: Seeded, name: str) -> None:
        body = MALFORMED[name]
        for method, path in (
            ("POST", "/api/threads"),
            ("PATCH", f"/api/threads/{seeded.thread}"),
            ("PUT", f"{seeded.messages}/u1"),
            ("PATCH", f"{seeded.messages}/u1"),
        ):
            _error(await seeded.client.request(method, path, content=body), 400, "invalid_json")

    async def test_nesting_well_within_the_limit_is_fine(self, client: httpx.AsyncClient) -> None:
        content = _deep_object(100)
        thread = (await client.post("/api/threads")).json()["id"]
        response = await client.post(f"/api/threads/{thread}/messages", content=_row_with(content))
        assert response.status_code == 204, response.text
        stored = (await client.get(f"/api/threads/{thread}/messages/m")).json()["content"]
        depth = 0
        while isinstance(stored, dict):
            stored = stored["a"]
            depth += 1
        assert (depth, stored) == (100, 1)


def _row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": "m", "parent_id": "u1", "format": "ai-sdk/v6", "content": _user("x")}
    for key, value in overrides.items():
        if value is _DROP:
            row.pop(key)
        else:
            row[key] = value
    return row


_DROP = object()

WRONG_TYPES: list[tuple[str, Any, str]] = [
    ("id-number", _row(id=123), "body.id"),
    ("id-null", _row(id=None), "body.id"),
    ("id-empty", _row(id=""), "body.id"),
    ("id-list", _row(id=["m"]), "body.id"),
    ("id-missing", _row(id=_DROP), "body.id"),
    ("id-256-chars", _row(id="m" * 256), "body.id"),
    ("parent-id-number", _row(parent_id=5), "body.parent_id"),
    ("parent-id-object", _row(parent_id={"id": "u1"}), "body.parent_id"),
    ("parent-id-empty", _row(parent_id=""), "body.parent_id"),
    ("parent-id-256-chars", _row(parent_id="p" * 256), "body.parent_id"),
    ("format-number", _row(format=6), "body.format"),
    ("format-null", _row(format=None), "body.format"),
    ("format-empty", _row(format=""), "body.format"),
    ("format-65-chars", _row(format="f" * 65), "body.format"),
    ("format-missing", _row(format=_DROP), "body.format"),
    ("content-string", _row(content="Hi"), "body.content"),
    ("content-list", _row(content=[_user("x")]), "body.content"),
    ("content-null", _row(content=None), "body.content"),
    ("content-number", _row(content=1), "body.content"),
    ("content-missing", _row(content=_DROP), "body.content"),
    ("unknown-top-level-key", _row(role="user"), "body.role"),
    ("camel-case-parent-id", _row(parentId="u1"), "body.parentId"),
    ("body-is-a-list", [_row()], "body"),
    ("body-is-a-string", "m", "body"),
    ("body-is-a-number", 1, "body"),
    ("body-is-null", None, "body"),
]


class TestWrongTypes:
    @pytest.mark.parametrize(("body", "loc"), [(b, loc) for _, b, loc in WRONG_TYPES], ids=[n for n, *_ in WRONG_TYPES])
    async def test_posting_a_message(self, seeded: Seeded, body: Any, loc: str) -> None:
        error = _error(await seeded.client.post(seeded.messages, json=body), 422, "validation_error")
        assert loc in _locs(error)

    async def test_an_empty_body_is_422(self, seeded: Seeded) -> None:
        error = _error(await seeded.client.post(seeded.messages, content=b""), 422, "validation_error")
        assert _locs(error) == ["body"]

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"format": "ai-sdk/v6"}, "body.content"),
            ({"content": _user("x")}, "body.format"),
            ({"format": "ai-sdk/v6", "content": _user("x"), "parent_id": 1}, "body.parent_id"),
            ({"format": "ai-sdk/v6", "content": _user("x"), "extra": True}, "body.extra"),
            ({"format": "ai-sdk/v6", "content": _user("x"), "id": 7}, "body.id"),
        ],
        ids=["no-content", "no-format", "parent-id-number", "unknown-key", "id-number"],
    )
    async def test_updating_a_message(self, seeded: Seeded, body: dict[str, Any], loc: str) -> None:
        for method in ("PUT", "PATCH"):
            error = _error(
                await seeded.client.request(method, f"{seeded.messages}/u1", json=body), 422, "validation_error"
            )
            assert loc in _locs(error)

    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"title": 1}, "body.title"),
            ({"title": ["t"]}, "body.title"),
            ({"localId": 5}, "body.localId"),
            ({"localId": ""}, "body.localId"),
            ({"localId": "l" * 256}, "body.localId"),
            ({"custom": "text"}, "body.custom"),
            ({"custom": [1]}, "body.custom"),
            ({"id": "chosen-by-client"}, "body.id"),
            ({"status": "archived"}, "body.status"),
        ],
        ids=repr,
    )
    async def test_creating_a_thread(self, seeded: Seeded, body: dict[str, Any], loc: str) -> None:
        error = _error(await seeded.client.post("/api/threads", json=body), 422, "validation_error")
        assert loc in _locs(error)

    async def test_an_id_of_255_characters_is_fine(self, client: httpx.AsyncClient) -> None:
        thread = (await client.post("/api/threads")).json()["id"]
        long_id = "m" * 255
        row = {"id": long_id, "parent_id": None, "format": "ai-sdk/v6", "content": _user("x")}
        assert (await client.post(f"/api/threads/{thread}/messages", json=row)).status_code == 204
        assert [r["id"] for r in (await client.get(f"/api/threads/{thread}/messages")).json()] == [long_id]
        assert (await client.get(f"/api/threads/{thread}/messages/{long_id}")).status_code == 200

    @pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
    async def test_a_path_id_longer_than_255_characters_is_422(self, seeded: Seeded, method: str) -> None:
        body = {"title": "x"} if method == "PATCH" else None
        error = _error(
            await seeded.client.request(method, f"/api/threads/{'t' * 256}", json=body), 422, "validation_error"
        )
        assert _locs(error) == ["path.thread_id"]
        error = _error(await seeded.client.get(f"{seeded.messages}/{'m' * 256}"), 422, "validation_error")
        assert _locs(error) == ["path.message_id"]

    async def test_a_new_thread_id_longer_than_255_characters_is_422(self, seeded: Seeded) -> None:
        row = {"id": "m", "parent_id": None, "format": "ai-sdk/v6", "content": _user("x")}
        error = _error(
            await seeded.client.post(f"/api/threads/{'t' * 256}/messages", json=row), 422, "validation_error"
        )
        assert _locs(error) == ["path.thread_id"]


NUL = "\u0000"


class TestNulCharacters:
    @pytest.mark.parametrize(
        ("body", "loc"),
        [
            ({"title": f"a{NUL}b"}, "body.title"),
            ({"localId": f"__LOCALID_{NUL}"}, "body.localId"),
            ({"custom": {"k": f"v{NUL}"}}, "body.custom.k"),
            ({"custom": {"nested": [{"deep": NUL}]}}, "body.custom.nested[0].deep"),
        ],
        ids=["title", "local-id", "custom-value", "custom-nested"],
    )
    async def test_creating_a_thread(self, seeded: Seeded, body: dict[str, Any], loc: str) -> None:
        error = _error(await seeded.client.post("/api/threads", json=body), 422, "validation_error")
        assert loc in _locs(error)

    @pytest.mark.parametrize(
        ("body", "loc"),
        [({"title": f"renamed{NUL}"}, "body.title"), ({"custom": {"k": NUL}}, "body.custom.k")],
        ids=["title", "custom"],
    )
    async def test_patching_a_thread(self, seeded: Seeded, body: dict[str, Any], loc: str) -> None:
        error = _error(await seeded.client.patch(f"/api/threads/{seeded.thread}", json=body), 422, "validation_error")
        assert loc in _locs(error)

    @pytest.mark.parametrize(
        ("row", "loc"),
        [
            (_row(content=_user(f"Hello{NUL}world")), "body.content.parts[0].text"),
            (
                _row(content={"role": "user", "parts": [{"type": "text", "text": "ok"}], "metadata": {"k": NUL}}),
                "body.content.metadata.k",
            ),
            (_row(format="my-app/v1", content={"a": [1, {"b": f"{NUL}"}]}), "body.content.a[1].b"),
            (_row(id=f"m{NUL}"), "body.id"),
            (_row(parent_id=f"u1{NUL}"), "body.parent_id"),
            (_row(format=f"ai-sdk/v6{NUL}"), "body.format"),
        ],
        ids=["text", "metadata", "opaque-content", "id", "parent-id", "format"],
    )
    async def test_posting_a_message(self, seeded: Seeded, row: dict[str, Any], loc: str) -> None:
        for path in (seeded.messages, "/api/threads/fresh-thread/messages"):
            error = _error(await seeded.client.post(path, json=row), 422, "validation_error")
            assert loc in _locs(error)

    async def test_a_nul_in_a_key(self, seeded: Seeded) -> None:
        row = _row(format="my-app/v1", content={f"k{NUL}": 1})
        error = _error(await seeded.client.post(seeded.messages, json=row), 422, "validation_error")
        assert any(loc.startswith("body.content") for loc in _locs(error))

    async def test_updating_a_message(self, seeded: Seeded) -> None:
        body = {"format": "ai-sdk/v6", "content": _user(f"edited{NUL}")}
        error = _error(await seeded.client.put(f"{seeded.messages}/u1", json=body), 422, "validation_error")
        assert "body.content.parts[0].text" in _locs(error)

    @pytest.mark.parametrize(
        "params",
        [{"format": NUL}, {"format": f"aui/v0{NUL}"}, {"after": NUL}, {"limit": NUL}],
        ids=["format", "format-suffix", "after", "limit"],
    )
    async def test_a_nul_in_a_query_parameter(self, seeded: Seeded, params: dict[str, str]) -> None:
        app = create_app(Settings(migrate_on_start=False), store=seeded.store)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a 500 is a response, not a raise
        async with httpx.AsyncClient(transport=transport, base_url="http://chatkeep.test") as client:
            response = await client.get(seeded.messages, params=params)
        error = _error(response, 422, "validation_error")
        assert [loc.removeprefix("query.") for loc in _locs(error)] == list(params)

    async def test_a_nul_in_a_path_id(self, seeded: Seeded) -> None:
        row = {"id": "m", "parent_id": None, "format": "ai-sdk/v6", "content": _user("x")}
        _error(await seeded.client.post("/api/threads/a%00b/messages", json=row), 422, "validation_error")
        _error(await seeded.client.get("/api/threads/a%00b"), 422, "validation_error")
        _error(await seeded.client.get(f"{seeded.messages}/u1%00"), 422, "validation_error")


TWENTY_MB = 20 * 1024 * 1024


class TestBodySize:
    @staticmethod
    def _huge() -> bytes:
        return _row_with(b'{"text": "' + b"x" * TWENTY_MB + b'"}')

    async def test_a_20_mb_body_is_413(self, seeded: Seeded) -> None:
        body = self._huge()
        response = await seeded.client.post(seeded.messages, content=body, headers={"content-type": "application/json"})
        assert response.request.headers["content-length"] == str(len(body))
        _error(response, 413, "payload_too_large")

    async def test_a_20_mb_body_without_content_length_is_413(self, seeded: Seeded) -> None:
        body = self._huge()

        async def chunks() -> AsyncIterator[bytes]:
            step = 1024 * 1024
            for start in range(0, len(body), step):
                yield body[start : start + step]

        response = await seeded.client.post(seeded.messages, content=chunks())
        assert "content-length" not in response.request.headers
        _error(response, 413, "payload_too_large")

    async def test_a_20_mb_title_is_413(self, seeded: Seeded) -> None:
        body = b'{"title": "' + b"t" * TWENTY_MB + b'"}'
        _error(await seeded.client.post("/api/threads", content=body), 413, "payload_too_large")
        _error(await seeded.client.patch(f"/api/threads/{seeded.thread}", content=body), 413, "payload_too_large")

    async def test_a_large_body_under_the_limit_is_fine(self, client: httpx.AsyncClient) -> None:
        thread = (await client.post("/api/threads")).json()["id"]
        text = "y" * (2 * 1024 * 1024)
        row = {"id": "big", "parent_id": None, "format": "ai-sdk/v6", "content": _user(text)}
        assert (await client.post(f"/api/threads/{thread}/messages", json=row)).status_code == 204
        stored = (await client.get(f"/api/threads/{thread}/messages/big")).json()
        assert stored["content"]["parts"][0]["text"] == text


class TestContentTypes:
    async def test_form_encoded_is_415(self, seeded: Seeded) -> None:
        response = await seeded.client.post(seeded.messages, data={"id": "m", "format": "ai-sdk/v6", "content": "x"})
        assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
        _error(response, 415, "unsupported_media_type")

    async def test_multipart_is_415(self, seeded: Seeded) -> None:
        row = b'{"id": "m", "parent_id": "u1", "format": "ai-sdk/v6", "content": {"role": "user", "parts": []}}'
        response = await seeded.client.post(
            seeded.messages, data={"id": "m"}, files={"row": ("row.json", row, "application/json")}
        )
        assert response.request.headers["content-type"].startswith("multipart/form-data")
        _error(response, 415, "unsupported_media_type")

    @pytest.mark.parametrize("content_type", ["application/xml", "text/html", "application/octet-stream", "image/png"])
    async def test_other_content_types_with_a_body_are_415(self, seeded: Seeded, content_type: str) -> None:
        body = b'{"id": "m", "parent_id": "u1", "format": "ai-sdk/v6", "content": {"role": "user", "parts": []}}'
        for method, path in (
            ("POST", seeded.messages),
            ("PUT", f"{seeded.messages}/u1"),
            ("POST", "/api/threads"),
            ("PATCH", f"/api/threads/{seeded.thread}"),
        ):
            response = await seeded.client.request(method, path, content=body, headers={"content-type": content_type})
            _error(response, 415, "unsupported_media_type")

    @pytest.mark.parametrize(
        "content_type",
        ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/vnd.api+json",
         "text/plain", "text/plain;charset=UTF-8", None],
    )  # fmt: skip
    async def test_json_content_types_are_accepted(
        self, client: httpx.AsyncClient, store: ChatStore, content_type: str | None
    ) -> None:
        thread = (await client.post("/api/threads")).json()["id"]
        body = b'{"id": "m", "parent_id": null, "format": "ai-sdk/v6", "content": {"role": "user", "parts": [{"type": "text", "text": "x"}]}}'  # noqa: E501
        headers = {"content-type": content_type} if content_type else {}
        response = await client.post(f"/api/threads/{thread}/messages", content=body, headers=headers)
        assert response.status_code == 204, response.text
        assert await count_rows(store) == {"threads": 1, "messages": 1, "parts": 1}
