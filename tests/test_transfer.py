"""Data rights: export, import and erase a user's data (``chatkeep.store.transfer`` and the CLI around it).

Alice has threads covering every content kind of ``ui_messages.json``, branches (an edit and a regeneration, and a
deleted message leaving a gap in the order keys), an opaque format, an archived thread with custom data and a local
id, statuses that ended early, and an empty thread. Her export, imported for another user (in the same database
after she is deleted, and in a fresh database), exports again to the very same records and reads back the same
through every listing. Conflicts are skipped, replaced or fail as asked; another user's thread ids are refused
without touching that user; a bad line is reported by number and nothing of it is stored; deleting a user
deletes every row of theirs (threads, messages, parts, streams, stream chunks) and nothing of anyone else.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console
from sqlalchemy import bindparam, text

from chatkeep.cli import main
from chatkeep.errors import DatabaseUnavailable, ThreadNotFound
from chatkeep.store import ChatStore
from chatkeep.store.migrate import upgrade
from chatkeep.store.streams import StreamLog
from chatkeep.store.transfer import OnConflict, ThreadExists, Transfer
from tests.conftest import count_rows, load_fixture, system_transaction

VALID: list[dict[str, Any]] = load_fixture("ui_messages.json")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")  # as the API writes them (Z), to the microsecond
TABLES = ("threads", "messages", "parts", "streams", "stream_chunks")


def _content(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "id"}


def _user(text: str) -> dict[str, Any]:
    return {"role": "user", "parts": [{"type": "text", "text": text}]}


def _assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "parts": [{"type": "step-start"}, {"type": "text", "text": text}]}


async def build_user(store: ChatStore, user: str) -> list[str]:
    """Alice's data (see the module docstring); returns her thread ids, oldest first."""
    every, _ = await store.create_thread(
        user, thread_id=f"{user}-every", local_id=f"__LOCALID_{user}", title="Every part", custom={"pin": 1.5}
    )
    parent = None
    for case in VALID:
        message = case["message"]
        await store.upsert_message(
            user, every.id, message_id=message["id"], parent_id=parent, content=_content(message), format=case["format"]
        )
        parent = message["id"]
    leaf = VALID[-1]["message"]["id"]
    first, second = VALID[0]["message"]["id"], VALID[1]["message"]["id"]
    # an edit keeping the id (the old version and its branch stay, renamed), a regeneration, a deleted message
    await store.edit_message(user, every.id, message_id=second, content=_user("edited"))
    await store.upsert_message(user, every.id, message_id="regen", parent_id=first, content=_assistant("again"))
    await store.delete_message(user, every.id, VALID[5]["message"]["id"])
    await store.update_thread(user, every.id, head_id=leaf)

    opaque, _ = await store.create_thread(user, thread_id=f"{user}-opaque", title="Opaque", custom=[1, "two", None])
    aui = {"role": "user", "content": [{"type": "text", "text": "hi"}], "metadata": {"custom": {}}, "n": 1e300}
    await store.upsert_message(user, opaque.id, message_id="o1", parent_id=None, content=aui, format="aui/v0")
    await store.append_message(user, opaque.id, {"id": "o2", **_assistant("typed after opaque")})
    await store.archive_thread(user, opaque.id)

    cut, _ = await store.create_thread(user, thread_id=f"{user}-cut")
    await store.append_message(user, cut.id, {"id": "q", **_user("question")})
    for status in ("interrupted", "aborted", "error"):
        await store.upsert_message(
            user, cut.id, message_id=f"a-{status}", parent_id="q", content=_assistant(status), status=status
        )

    empty, _ = await store.create_thread(user, thread_id=f"{user}-empty")
    return [every.id, opaque.id, cut.id, empty.id]


async def export(transfer: Transfer, user: str, *, page_size: int = 100) -> list[dict[str, Any]]:
    return [record async for record in transfer.export_user(user, page_size=page_size)]


def lines(records: Sequence[Any]) -> list[str]:
    return [json.dumps(record) for record in records]


async def views(store: ChatStore, user: str) -> dict[str, Any]:
    """Everything the API shows of the user's threads, without the user id and the internal order keys."""
    threads = [{k: v for k, v in asdict(t).items() if k != "user_id"} for t in (await store.list_threads(user))]
    out: dict[str, Any] = {"threads": threads}
    for thread in threads:
        messages = await store.list_messages(user, thread["id"])
        out[thread["id"]] = {
            "messages": [(m.id, m.parent_id, m.format, m.content, m.created_at, m.status) for m in messages],
            "branch": await store.active_branch(user, thread["id"]),
        }
    return out


async def rows(store: ChatStore, thread_ids: Sequence[str], stream_ids: Sequence[str] = ()) -> dict[str, int]:
    """How many rows of each table belong to these threads (chunks: to these streams)."""
    queries = {
        "threads": "SELECT count(*) FROM threads WHERE id IN :ids",
        "messages": "SELECT count(*) FROM messages WHERE thread_id IN :ids",
        "parts": "SELECT count(*) FROM parts WHERE thread_id IN :ids",
        "streams": "SELECT count(*) FROM streams WHERE thread_id IN :ids",
        "stream_chunks": "SELECT count(*) FROM stream_chunks WHERE stream_id IN :ids",
    }
    out = {}
    async with system_transaction(store.engine) as conn:
        for table, sql in queries.items():
            ids = stream_ids if table == "stream_chunks" else thread_ids
            query = text(sql).bindparams(bindparam("ids", expanding=True))
            out[table] = (await conn.execute(query, {"ids": list(ids) or [""]})).scalar_one()
    return out


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path, create_pg_database: Callable[[], str]) -> str:
    """An empty database (not migrated) on the test's backend."""
    return f"sqlite:///{tmp_path / 'fresh.db'}" if backend == "sqlite" else create_pg_database()


@pytest.fixture
async def fresh_store(fresh_url: str) -> AsyncIterator[ChatStore]:
    fresh = ChatStore.from_url(fresh_url, pool_size=2)
    await upgrade(fresh.engine)
    yield fresh
    await fresh.close()


class TestExport:
    async def test_records_hold_threads_oldest_first_with_every_message(self, store: ChatStore) -> None:
        ids = await build_user(store, "alice")
        await build_user(store, "carol")
        records = await export(Transfer(store.engine), "alice", page_size=3)  # two pages

        assert [r["thread"]["id"] for r in records] == ids
        for record in records:
            assert list(record) == ["version", "thread", "messages"] and record["version"] == 1
            thread = await store.get_thread("alice", record["thread"]["id"])
            assert record["thread"] == {
                "id": thread.id,
                "title": thread.title,
                "status": thread.status,
                "custom": thread.custom,
                "localId": thread.local_id,
                "headId": thread.head_id,
                "createdAt": thread.created_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "updatedAt": thread.updated_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            }
            stored = await store.list_messages("alice", thread.id)
            assert record["messages"] == [
                {
                    "id": m.id,
                    "parent_id": m.parent_id,
                    "format": m.format,
                    "content": m.content,
                    "created_at": m.created_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                    "status": m.status or "complete",
                }
                for m in stored
            ]
            assert all(ISO.match(m["created_at"]) for m in record["messages"])
            assert ISO.match(record["thread"]["createdAt"]) and ISO.match(record["thread"]["updatedAt"])
        every, opaque, cut, empty = records
        assert len(every["messages"]) == len(VALID) + 1  # + the edit and the regeneration - the deleted one
        assert opaque["thread"]["status"] == "archived" and opaque["messages"][0]["content"]["n"] == 1e300
        assert [m["status"] for m in cut["messages"]] == ["complete", "interrupted", "aborted", "error"]
        assert empty["messages"] == [] and empty["thread"]["headId"] is None

    async def test_a_reply_being_generated_is_exported_as_interrupted(self, store: ChatStore) -> None:
        await store.append_message("alice", "t", {"id": "q", **_user("hi")}, create_thread=True)
        await store.upsert_message(
            "alice", "t", message_id="r", parent_id="q", content=_assistant("ha"), status="streaming"
        )
        (record,) = await export(Transfer(store.engine), "alice")
        assert [m["status"] for m in record["messages"]] == ["complete", "interrupted"]
        await Transfer(store.engine).delete_user("alice")
        await Transfer(store.engine).import_records("bob", [record])
        assert (await store.get_message("bob", "t", "r")).status == "interrupted"

    async def test_a_user_without_threads_exports_nothing(self, store: ChatStore) -> None:
        await build_user(store, "carol")
        assert await export(Transfer(store.engine), "nobody") == []


class TestRoundTrip:
    async def test_into_a_fresh_database(self, store: ChatStore, fresh_store: ChatStore) -> None:
        await build_user(store, "alice")
        records = await export(Transfer(store.engine), "alice")
        report = await Transfer(fresh_store.engine).import_records("bob", lines(records))

        assert [(r.line, r.outcome) for r in report.results] == [
            (1, "imported"),
            (2, "imported"),
            (3, "imported"),
            (4, "imported"),
        ]
        assert await export(Transfer(fresh_store.engine), "bob") == records
        assert await views(fresh_store, "bob") == await views(store, "alice")
        assert await count_rows(fresh_store) == await count_rows(store)

    async def test_moving_a_user_within_one_database(self, store: ChatStore) -> None:
        await build_user(store, "alice")
        await build_user(store, "carol")
        transfer = Transfer(store.engine)
        records = await export(transfer, "alice")
        before, carol = await views(store, "alice"), await export(transfer, "carol")

        await transfer.delete_user("alice")
        report = await transfer.import_records("bob", lines(records))
        assert report.count("imported") == 4 and not report.problems
        assert await export(transfer, "bob") == records
        assert await views(store, "bob") == before
        assert await export(transfer, "carol") == carol

    async def test_later_messages_continue_after_the_imported_ones(self, store: ChatStore) -> None:
        await build_user(store, "alice")
        transfer = Transfer(store.engine)
        records = await export(transfer, "alice")
        await transfer.delete_user("alice")
        await transfer.import_records("bob", records)

        head = (await store.get_thread("bob", "alice-every")).head_id
        last_seq = (await store.list_messages("bob", "alice-every")).items[-1].seq
        added = await store.append_message("bob", "alice-every", {"id": "later", **_user("and now?")})
        assert added.seq == last_seq + 1 and added.parent_id == head
        assert (await store.get_thread("bob", "alice-every")).head_id == "later"
        assert (await store.list_messages("bob", "alice-every")).items[-1].id == "later"


class TestConflicts:
    @pytest.fixture
    async def records(self, store: ChatStore) -> list[dict[str, Any]]:
        """Alice's export, imported for bob (alice is gone, so bob owns those thread ids now)."""
        await build_user(store, "alice")
        transfer = Transfer(store.engine)
        records = await export(transfer, "alice")
        await transfer.delete_user("alice")
        await transfer.import_records("bob", records)
        return records

    async def test_skip_leaves_the_users_threads_alone(self, store: ChatStore, records: list[dict[str, Any]]) -> None:
        await store.rename_thread("bob", "alice-every", "mine now")
        changed = await export(Transfer(store.engine), "bob")
        report = await Transfer(store.engine).import_records("bob", lines(records))
        assert [r.outcome for r in report.results] == ["skipped"] * 4
        assert await export(Transfer(store.engine), "bob") == changed

    async def test_replace_recreates_the_thread_from_the_record(
        self, store: ChatStore, records: list[dict[str, Any]]
    ) -> None:
        await store.rename_thread("bob", "alice-every", "mine now")
        await store.append_message("bob", "alice-every", {"id": "extra", **_user("more")})
        await store.delete_message("bob", "alice-cut", "q")
        report = await Transfer(store.engine).import_records("bob", lines(records), on_conflict="replace")
        assert [r.outcome for r in report.results] == ["replaced"] * 4
        assert await export(Transfer(store.engine), "bob") == records

    async def test_fail_stops_at_the_first_existing_thread(
        self, store: ChatStore, records: list[dict[str, Any]]
    ) -> None:
        new = copy.deepcopy(records[0])
        new["thread"]["id"], new["thread"]["localId"] = "brand-new", None
        after = copy.deepcopy(records[3])
        after["thread"]["id"] = "never-reached"
        with pytest.raises(ThreadExists) as raised:
            await Transfer(store.engine).import_records(
                "bob", [*lines([new]), "", *lines(records[1:2] + [after])], on_conflict="fail"
            )
        assert raised.value.line == 3 and raised.value.thread_id == "alice-opaque"
        assert "line 3" in raised.value.message and "already exists" in raised.value.message
        assert len((await store.list_messages("bob", "brand-new")).items) == len(records[0]["messages"])
        with pytest.raises(ThreadNotFound):
            await store.get_thread("bob", "never-reached")

    async def test_a_thread_id_of_another_user_is_refused(
        self, store: ChatStore, records: list[dict[str, Any]]
    ) -> None:
        before, counts = await views(store, "bob"), await count_rows(store)
        modes: tuple[OnConflict, ...] = ("skip", "replace", "fail")
        for mode in modes:
            report = await Transfer(store.engine).import_records("mallory", lines(records), on_conflict=mode)
            assert [r.outcome for r in report.results] == ["refused"] * 4
            for result in report.problems:
                assert result.error is not None and "belongs to another user" in result.error.message
                assert "Every part" not in result.describe()  # nothing of bob's thread is shown
        assert await views(store, "bob") == before and await count_rows(store) == counts
        assert len(await store.list_threads("mallory")) == 0

    async def test_a_local_id_the_user_has_on_another_thread_is_refused_whole(
        self, store: ChatStore, records: list[dict[str, Any]]
    ) -> None:
        clash = copy.deepcopy(records[0])
        clash["thread"]["id"] = "other-id"  # same localId as bob's "alice-every"
        counts = await count_rows(store)
        (result,) = (await Transfer(store.engine).import_records("bob", [clash])).results
        assert result.outcome == "refused" and "localId '__LOCALID_alice'" in result.describe()
        assert await count_rows(store) == counts


class TestBadRecords:
    async def test_bad_lines_are_reported_by_number_and_nothing_of_them_is_stored(self, store: ChatStore) -> None:
        def record(thread_id: str, *messages: dict[str, Any]) -> dict[str, Any]:
            stamp = "2026-01-02T03:04:05.123456+00:00"
            return {
                "version": 1,
                "thread": {"id": thread_id, "createdAt": stamp, "updatedAt": "2026-01-02T04:04:05Z"},
                "messages": [{"created_at": stamp, "format": "ai-sdk/v6", **m} for m in messages],
            }

        good = {"id": "m1", "content": _user("fine")}
        no_stamp = record("no-stamp", good)
        del no_stamp["thread"]["createdAt"]
        naive = record("naive", good)
        naive["messages"][0]["created_at"] = "2026-01-02T03:04:05"
        given = [
            json.dumps(record("first", good)),
            "{not json",
            "",
            json.dumps(no_stamp),
            json.dumps(
                record(
                    "bad-content",
                    good,
                    {"id": "m2", "parent_id": "m1", "content": {"role": "user", "parts": [{"type": "text"}]}},
                )
            ),
            json.dumps(record("orphan", good, {"id": "m2", "parent_id": "nowhere", "content": _user("x")})),
            "[1, 2]",
            json.dumps({**record("v2", good), "version": 2}),
            '{"version": 1, "thread": {"id": "nan", "createdAt": NaN}}',
            json.dumps(naive),
            json.dumps(record("bad-head", good) | {"thread": record("bad-head")["thread"] | {"headId": "zz"}}),
            json.dumps(record("dupe", good, good)),
            json.dumps(record("nul", {"id": "m1", "content": _user("a\x00b")})),
            json.dumps(record("typo", good) | {"mesages": []}),
            json.dumps(
                record("last", good, {"id": "m2", "parent_id": "m1", "format": "aui/v0", "content": {"k": [1]}})
            ),
        ]
        report = await Transfer(store.engine).import_records("bob", given)

        problems = {r.line: r.describe() for r in report.problems}
        assert problems == {
            2: "line 2: not JSON: key must be a string at line 1 column 2",  # as the API says it
            4: "line 4 (thread 'no-stamp'): thread.createdAt: Field required",
            5: "line 5 (thread 'bad-content'): messages[1].content.parts[0].text: Field required",
            6: "line 6 (thread 'orphan'): messages[1].parent_id: 'nowhere' is not an earlier message of the record "
            "(parents come first)",
            7: "line 7: a record must be a JSON object",
            8: "line 8 (thread 'v2'): version: Input should be 1",
            9: "line 9: not JSON: expected value at line 1 column 53",  # NaN
            10: "line 10 (thread 'naive'): messages[0].created_at: Value error, needs a UTC offset (e.g. '+00:00' or "
            "'Z')",
            11: "line 11 (thread 'bad-head'): thread.headId: 'zz' is not a message of the record",
            12: "line 12 (thread 'dupe'): messages[1].id: message id 'm1' appears twice",
            13: "line 13 (thread 'nul'): messages[0].content.parts[0].text: text may not contain NUL characters or "
            "unpaired surrogates",
            14: "line 14 (thread 'typo'): mesages: Extra inputs are not permitted",
        }
        assert [(r.line, r.outcome) for r in report.results if r.outcome != "refused"] == [
            (1, "imported"),
            (15, "imported"),
        ]
        assert [t.id for t in await store.list_threads("bob")] == ["last", "first"]
        assert await count_rows(store) == {"threads": 2, "messages": 3, "parts": 2}
        first = await store.get_thread("bob", "first")
        assert first.created_at.isoformat() == "2026-01-02T03:04:05.123456+00:00"
        assert first.updated_at.isoformat() == "2026-01-02T04:04:05+00:00"

    async def test_bytes_that_are_not_utf8_and_parsed_non_objects_are_reported(self, store: ChatStore) -> None:
        report = await Transfer(store.engine).import_records("bob", [b"\xff\xfe{}\n", [1, 2]])  # type: ignore[list-item]
        assert [r.describe() for r in report.problems] == [
            "line 1: not UTF-8 text (invalid start byte at byte 0)",
            "line 2: a record must be a JSON object",
        ]

    async def test_every_issue_of_a_record_is_named(self, store: ChatStore) -> None:
        record = {"version": 1, "thread": {"id": 7, "status": "gone"}, "messages": [{}]}
        (result,) = (await Transfer(store.engine).import_records("bob", [record])).results
        assert result.outcome == "refused" and result.thread_id is None
        assert result.describe() == (
            "line 1: thread.id: Input should be a valid string; thread.status: Input should be 'regular' or "
            "'archived'; thread.createdAt: Field required; thread.updatedAt: Field required; messages[0].id: Field "
            "required (and 3 more)"
        )


class TestDelete:
    async def test_deleting_a_user_deletes_every_row_of_theirs_and_nothing_else(self, store: ChatStore) -> None:
        alice = await build_user(store, "alice")
        carol = await build_user(store, "carol")
        log = StreamLog(store.engine)
        for user_threads in (alice, carol):
            for i, thread_id in enumerate(user_threads[:2]):
                stream_id = f"{thread_id}-s{i}"
                await log.create(stream_id=stream_id, thread_id=thread_id, message_id="m", owner="h:1:t")
                await log.append([(stream_id, 0, '{"type":"start"}'), (stream_id, 1, '{"type":"finish"}')])
        alice_streams, carol_streams = (
            [f"{t}-s{i}" for i, t in enumerate(alice[:2])],
            [f"{t}-s{i}" for i, t in enumerate(carol[:2])],
        )
        alice_rows, carol_rows = await rows(store, alice, alice_streams), await rows(store, carol, carol_streams)
        assert all(alice_rows.values()) and alice_rows == carol_rows
        carol_export = await export(Transfer(store.engine), "carol")

        deleted = await Transfer(store.engine).delete_user("alice")

        assert (deleted.threads, deleted.messages) == (alice_rows["threads"], alice_rows["messages"])
        assert await rows(store, alice, alice_streams) == dict.fromkeys(TABLES, 0)
        assert await rows(store, carol, carol_streams) == carol_rows
        assert await export(Transfer(store.engine), "carol") == carol_export
        again = await Transfer(store.engine).delete_user("alice")
        assert (again.threads, again.messages) == (0, 0)

    async def test_deleting_a_thread_deletes_its_streams_and_chunks(self, store: ChatStore) -> None:
        ids = await build_user(store, "alice")
        log = StreamLog(store.engine)
        await log.create(stream_id="s", thread_id=ids[0], message_id="m", owner="h:1:t")
        await log.append([("s", 0, '{"type":"start"}')])
        await store.delete_thread("alice", ids[0])
        assert await rows(store, ids[:1], ["s"]) == dict.fromkeys(TABLES, 0)
        assert (await rows(store, ids[1:]))["messages"] > 0


# -- the command line (sync tests: the CLI runs its own event loop) ------------------------------------------------


@pytest.fixture
def cli_url(fresh_url: str) -> str:
    """A fresh database brought up to date by ``chatkeep db upgrade``, holding alice's and carol's threads."""
    result = CliRunner().invoke(main, ["db", "upgrade", "--database-url", fresh_url])
    assert result.exit_code == 0, result.output

    async def fill() -> None:
        store = ChatStore.from_url(fresh_url, pool_size=2)
        try:
            await build_user(store, "alice")
            await build_user(store, "carol")
        finally:
            await store.close()

    asyncio.run(fill())
    return fresh_url


def _exported(url: str, user: str) -> str:
    result = CliRunner().invoke(main, ["export", "--user", user, "--database-url", url])
    assert result.exit_code == 0, result.output
    return result.stdout


class TestCommandLine:
    def test_export_delete_import_round_trip(self, cli_url: str, tmp_path: Path) -> None:
        runner = CliRunner()
        dump = tmp_path / "alice.jsonl"
        exported = runner.invoke(main, ["export", "--user", "alice", "--output", str(dump), "--database-url", cli_url])
        assert exported.exit_code == 0, exported.output
        assert exported.stderr == f"exported 4 threads of user 'alice' to {dump}\n"
        assert dump.read_text(encoding="utf-8") == _exported(cli_url, "alice")
        assert "\u2028" not in dump.read_text(encoding="utf-8")  # escaped: every reader sees one line per thread
        assert [json.loads(line)["thread"]["id"] for line in dump.read_text().splitlines()] == [
            "alice-every",
            "alice-opaque",
            "alice-cut",
            "alice-empty",
        ]

        deleted = runner.invoke(main, ["users", "delete", "alice", "--yes", "--database-url", cli_url])
        assert deleted.exit_code == 0, deleted.output
        assert deleted.stderr == f"deleted 4 threads and {len(VALID) + 1 + 2 + 4} messages of user 'alice'\n"
        assert _exported(cli_url, "alice") == ""

        imported = runner.invoke(main, ["import", "--user", "bob", "--input", str(dump), "--database-url", cli_url])
        assert imported.exit_code == 0, imported.output
        assert imported.stderr == "imported 4 threads for user 'bob'\n"
        assert _exported(cli_url, "bob") == dump.read_text(encoding="utf-8")

        again = runner.invoke(
            main,
            ["import", "--user", "bob", "--on-conflict", "replace", "--database-url", cli_url],
            input=dump.read_bytes(),
        )
        assert again.exit_code == 0 and again.stderr == "imported 4 threads for user 'bob' (4 replaced)\n"
        skipped = runner.invoke(main, ["import", "--user", "bob", "-i", str(dump), "--database-url", cli_url])
        assert skipped.stderr == "imported 0 threads for user 'bob', skipped 4 the user already had\n"
        failed = runner.invoke(
            main, ["import", "--user", "bob", "-i", str(dump), "--on-conflict", "fail", "--database-url", cli_url]
        )
        assert failed.exit_code == 1 and "Error: line 1: thread 'alice-every' already exists" in failed.stderr
        assert "Traceback" not in failed.output

    def test_import_reports_bad_lines_and_exits_1(self, cli_url: str) -> None:
        carol = _exported(cli_url, "carol")
        result = CliRunner().invoke(
            main, ["import", "--user", "mallory", "--database-url", cli_url], input="{oops\n" + carol
        )
        assert result.exit_code == 1
        assert result.stderr.splitlines() == [
            "line 1: not JSON: key must be a string at line 1 column 2",
            *[
                f"line {n} (thread '{t}'): thread id '{t}' belongs to another user; this record was not imported"
                for n, t in enumerate(["carol-every", "carol-opaque", "carol-cut", "carol-empty"], start=2)
            ],
            "imported 0 threads for user 'mallory'",
            "Error: 5 records not imported (see the lines above)",
        ]
        assert _exported(cli_url, "carol") == carol and _exported(cli_url, "mallory") == ""

    def test_users_delete_asks_first(self, cli_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        runner = CliRunner()
        args = ["users", "delete", "alice", "--database-url", cli_url]
        refused = runner.invoke(main, args)
        assert refused.exit_code == 1 and "pass --yes" in refused.stderr
        monkeypatch.setattr("chatkeep.cli._interactive", lambda: True)
        declined = runner.invoke(main, args, input="n\n")
        assert declined.exit_code == 1 and f"and {len(VALID) + 7} messages? This cannot be undone." in declined.stderr
        assert _exported(cli_url, "alice") != ""
        accepted = runner.invoke(main, args, input="y\n")
        assert accepted.exit_code == 0, accepted.output
        assert _exported(cli_url, "alice") == "" and _exported(cli_url, "carol") != ""
        nothing = runner.invoke(main, args)
        assert nothing.exit_code == 0 and "has no threads; nothing to delete" in nothing.stderr

    def test_progress_bar_on_a_terminal(self, cli_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        screen = io.StringIO()
        monkeypatch.setattr("chatkeep.cli.console", Console(file=screen, force_terminal=True, width=100))
        dump = tmp_path / "carol.jsonl"
        result = CliRunner().invoke(main, ["export", "--user", "carol", "-o", str(dump), "--database-url", cli_url])
        assert result.exit_code == 0, result.output
        assert "4/4" in screen.getvalue() and "threads" in screen.getvalue()
        lines_ = dump.read_text().splitlines()
        bad = CliRunner().invoke(
            main, ["import", "--user", "carol", "--database-url", cli_url], input="\n".join(["[]", *lines_])
        )
        assert bad.exit_code == 1
        assert "line 1: a record must be a JSON object" in screen.getvalue()
        assert "skipped 4 the user already had" in bad.stderr and "1 record not imported" in bad.stderr

    def test_an_export_that_fails_leaves_no_file(
        self, cli_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        async def broken(self: Transfer, user_id: str, *, page_size: int = 100) -> AsyncIterator[dict[str, Any]]:
            yield {"version": 1}
            raise DatabaseUnavailable("The database is unavailable; try again shortly.")

        monkeypatch.setattr(Transfer, "export_user", broken)
        dump = tmp_path / "out.jsonl"
        dump.write_text("previous\n")
        result = CliRunner().invoke(main, ["export", "--user", "alice", "-o", str(dump), "--database-url", cli_url])
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.stderr == "Error: The database is unavailable; try again shortly.\n"
        assert dump.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir() if "out" in p.name] == [
            "out.jsonl"
        ]

    def test_an_unwritable_output_is_a_clear_error(self, cli_url: str, tmp_path: Path) -> None:
        target = tmp_path / "missing" / "out.jsonl"
        result = CliRunner().invoke(main, ["export", "--user", "alice", "-o", str(target), "--database-url", cli_url])
        assert result.exit_code == 1 and result.stderr.startswith(f"Error: cannot write {target}: ")
