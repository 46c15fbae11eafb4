"""Scenario 2: storing messages. 32 clients append at once, one message per request
(``POST /api/threads/{id}/messages``, assistant-ui's ``append``), each to its own thread, each message the child of
the previous one, alternating user texts and four-part assistant replies.

chatkeep and the floor take turns in blocks of a few seconds (each block: all 32 clients as fast as they can);
throughput is messages stored per second over all of a server's measured blocks. On PostgreSQL the same
transaction is also run straight from the load generator on 32 asyncpg connections (no HTTP at all) for
reference. Checks: every request answered 204; afterwards every thread holds exactly the messages its client
sent, and threads written by either server read back through chatkeep as exactly those messages.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from benchmarks.client import Connection
from benchmarks.data import BENCH_USER, conversation, message_id
from benchmarks.databases import Backend, BenchDatabase, pg_connection
from benchmarks.floors.pg import PgStore
from benchmarks.floors.shape import part_insert_row
from benchmarks.harness import CheckFailed, Context, connect, expect, floor_spec, ms
from benchmarks.report import Row, Target
from benchmarks.seed import ThreadSeed, seed_threads
from benchmarks.servers import ServerProcess, chatkeep_spec, running

__all__ = ["run"]

SCENARIO = "2. Store messages"
_MESSAGES = conversation(4)  # the message shapes cycle: user, assistant, …


def _message(index: int) -> dict[str, Any]:
    template = _MESSAGES[index % 2]
    return {**template, "id": message_id(index)}


@dataclass
class _Writer:
    """One client: its thread and how many messages it has stored there."""

    thread_id: str
    count: int = 0

    def body(self) -> bytes:
        message = _message(self.count)
        content = {k: v for k, v in message.items() if k != "id"}
        parent = message_id(self.count - 1) if self.count else None
        return orjson.dumps({"id": message["id"], "parent_id": parent, "format": "ai-sdk/v6", "content": content})


@dataclass
class _Tally:
    count: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    blocks: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


async def _block(connections: list[Connection], writers: list[_Writer], seconds: float, tally: _Tally | None) -> None:
    """All clients append until ``seconds`` have passed; counted into ``tally`` unless it is a warmup."""
    deadline = time.perf_counter() + seconds
    done = 0
    latencies: list[float] = []

    async def client(connection: Connection, writer: _Writer) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            path = f"/api/threads/{writer.thread_id}/messages"
            response = expect(await connection.request("POST", path, writer.body()), 204, f"POST {path}")
            writer.count += 1
            done += 1
            latencies.append(response.elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(client(c, w) for c, w in zip(connections, writers, strict=True)))
    elapsed = time.perf_counter() - started
    if tally is not None:
        tally.count += done
        tally.seconds += elapsed
        tally.latencies += latencies
        tally.blocks.append(done / elapsed)


async def _raw_asyncpg(database: BenchDatabase, writers: list[_Writer], seconds: float) -> _Tally:
    """The floor's transaction straight from here on one connection per client: no HTTP, no server."""
    store = await PgStore.open(database.admin_url)
    tally = _Tally()
    deadline = time.perf_counter() + seconds

    async def client(writer: _Writer) -> None:
        while time.perf_counter() < deadline:
            message = _message(writer.count)
            content = {k: v for k, v in message.items() if k != "id"}
            rows = [
                part_insert_row(writer.thread_id, message["id"], i, p, store.dumps)
                for i, p in enumerate(content["parts"])
            ]
            parent = message_id(writer.count - 1) if writer.count else None
            if not await store.append(BENCH_USER, writer.thread_id, message["id"], parent, "ai-sdk/v6", content, rows):
                raise CheckFailed(f"raw asyncpg: thread {writer.thread_id} not found")
            writer.count += 1
            tally.count += 1

    started = time.perf_counter()
    try:
        await asyncio.gather(*(client(w) for w in writers))
    finally:
        tally.seconds = time.perf_counter() - started
        await store.close()
    return tally


async def _verify(database: BenchDatabase, chatkeep: ServerProcess, writers: list[_Writer]) -> None:
    counts: dict[str, int]
    if database.backend == "postgres":
        async with pg_connection(database) as conn:
            rows = await conn.fetch("SELECT thread_id, count(*) FROM messages GROUP BY thread_id")
            counts = {row[0]: int(row[1]) for row in rows}
    else:
        import sqlite3

        assert database.path is not None
        conn = sqlite3.connect(database.path)
        try:
            counts = dict(conn.execute("SELECT thread_id, count(*) FROM messages GROUP BY thread_id").fetchall())
        finally:
            conn.close()
    for writer in writers:
        if counts.get(writer.thread_id, 0) != writer.count:
            raise CheckFailed(
                f"thread {writer.thread_id}: {counts.get(writer.thread_id, 0)} stored, {writer.count} sent"
            )
    # Read a thread written by each party back through chatkeep: exactly what was sent, in order.
    connection = await connect(chatkeep)
    try:
        for writer in {w.thread_id[:3]: w for w in writers}.values():
            path = f"/api/chat/{writer.thread_id}/messages"
            got = expect(await connection.request("GET", path), 200, path).json()
            if got != [_message(i) for i in range(writer.count)]:
                raise CheckFailed(f"{path}: the messages read back are not the ones appended")
    finally:
        connection.close()


async def run(ctx: Context, backend: Backend) -> list[Row]:
    plan = ctx.plan
    clients = plan.append_clients
    database = await ctx.factory.create(backend, "append")
    groups = {name: [_Writer(f"{name}-{i}") for i in range(clients)] for name in ("ack", "afl", "raw")}
    await seed_threads(database, [ThreadSeed(w.thread_id, BENCH_USER) for ws in groups.values() for w in ws])
    tallies = {"chatkeep": _Tally(), "floor": _Tally()}
    specs = [chatkeep_spec(database.chatkeep_url, BENCH_USER), floor_spec(database, BENCH_USER)]
    async with running(specs, ctx.logdir, f"append-{backend}") as (chatkeep, floor):
        pools = {
            "chatkeep": [await connect(chatkeep) for _ in range(clients)],
            "floor": [await connect(floor) for _ in range(clients)],
        }
        writers = {"chatkeep": groups["ack"], "floor": groups["afl"]}
        for name in ("chatkeep", "floor"):
            await _block(pools[name], writers[name], 1.0, None)  # warm up
        async with ctx.profiler.record(chatkeep, f"append-{backend}"):
            for round_ in range(plan.append_rounds):
                order = ("chatkeep", "floor") if round_ % 2 == 0 else ("floor", "chatkeep")
                for name in order:
                    await _block(pools[name], writers[name], plan.append_seconds, tallies[name])
                    ctx.log(f"append/{backend}: {name} {tallies[name].blocks[-1]:.0f} messages/s")
        for connections in pools.values():
            for connection in connections:
                connection.close()
        raw = await _raw_asyncpg(database, groups["raw"], plan.append_seconds) if backend == "postgres" else None
        await _verify(database, chatkeep, [*groups["ack"], *groups["afl"], *(groups["raw"] if raw else [])])
    mine, theirs = tallies["chatkeep"], tallies["floor"]
    lat_mine, lat_floor = ms(mine.latencies), ms(theirs.latencies)
    case = f"{clients} clients, 1 message per request"
    details = {
        "chatkeep_blocks_per_s": mine.blocks,
        "floor_blocks_per_s": theirs.blocks,
        "chatkeep_latency_ms": lat_mine.as_dict(),
        "floor_latency_ms": lat_floor.as_dict(),
        "messages_stored": mine.count + theirs.count,
    }
    rows = [
        Row(SCENARIO, case, database.label, "throughput", "messages/s", mine.rate, theirs.rate,
            Target("ratio>=", 0.8) if backend == "postgres" else None, details=details),
        Row(SCENARIO, case, database.label, "p50 latency", "ms", lat_mine.p50, lat_floor.p50),
        Row(SCENARIO, case, database.label, "p99 latency", "ms", lat_mine.p99, lat_floor.p99),
    ]  # fmt: skip
    if raw is not None:
        rows.append(
            Row(SCENARIO, f"{case}: floor = raw asyncpg from the load generator, no HTTP", database.label,
                "throughput", "messages/s", mine.rate, raw.rate, details={"raw_messages": raw.count})
        )  # fmt: skip
    await ctx.factory.drop(database)
    return rows
