"""Scenario 3: a chat turn. ``POST /api/chat`` with useChat's default body (the whole branch: a 200-message
history and the new prompt), the ``demo`` model at zero delay, and persistence included: the prompt and the reply
are stored before the stream ends.

Every turn goes to a fresh thread holding the same 200 messages, so every turn reads exactly a 200-message
history. One client (chatkeep and the floor in turn, request by request), then saturation: 16 clients per server
until a fixed number of turns is done. Latency is until the stream's last byte (``[DONE]``). Checks: every stream
carries the demo model's reply and ends with ``[DONE]``; chatkeep and the floor send the same sequence of frames;
afterwards every thread holds the prompt and the reply, stored in full under the ``messageId`` the stream
announced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from benchmarks.client import Connection, SseCollector
from benchmarks.data import BENCH_USER, conversation, demo_reply_text, prompt_message
from benchmarks.databases import Backend, BenchDatabase, pg_connection
from benchmarks.harness import CheckFailed, Context, connect, expect, floor_spec, ms
from benchmarks.report import Row, Target
from benchmarks.seed import ThreadSeed, analyze, clone_thread, seed_threads
from benchmarks.servers import ServerProcess, chatkeep_spec, running

__all__ = ["run"]

SCENARIO = "3. Chat turn"


@dataclass
class _Turns:
    """One server's threads, each used for one turn, and what its streams said."""

    threads: Iterator[str]
    history: bytes
    replies: dict[str, tuple[str, str]] = field(default_factory=dict)  # thread -> (messageId, prompt text)
    frame_types: list[str] = field(default_factory=list)

    async def one(self, connection: Connection) -> float:
        thread_id = next(self.threads)
        prompt = prompt_message(thread_id)
        body = (
            b'{"id":' + orjson.dumps(thread_id) + b',"trigger":"submit-message","messages":['
            + self.history + b"," + orjson.dumps(prompt) + b"]}"
        )  # fmt: skip
        collector = SseCollector()
        response = await connection.request("POST", "/api/chat", body, sink=collector)
        expect(response, 200, f"POST /api/chat ({thread_id})")
        text = prompt["parts"][0]["text"]
        if not collector.done or collector.full_text != demo_reply_text(text) or collector.message_id is None:
            raise CheckFailed(f"turn in {thread_id}: the stream did not carry the whole reply")
        self.replies[thread_id] = (collector.message_id, text)
        self.frame_types = collector.frame_types
        return response.elapsed


async def _saturate(connections: list[Connection], turns: _Turns, count: int, seconds: float) -> tuple[int, float]:
    """Clients run turns back to back until ``count`` are done or ``seconds`` have passed."""
    remaining = count
    deadline = time.perf_counter() + seconds
    done = 0

    async def client(connection: Connection) -> None:
        nonlocal remaining, done
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            await turns.one(connection)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    return done, time.perf_counter() - started


async def _verify(database: BenchDatabase, history: int, replies: dict[str, tuple[str, str]]) -> None:
    """Each thread: the history, the prompt and the reply (``seq`` history+2), stored in full, complete."""
    query = (
        "SELECT m.thread_id, m.id, m.status, p.text_text, (SELECT count(*) FROM messages c WHERE c.thread_id = "
        "m.thread_id) FROM messages m JOIN parts p ON p.thread_id = m.thread_id AND p.message_id = m.id "
        f"WHERE m.seq = {history + 2} AND p.type = 'text'"
    )
    if database.backend == "postgres":
        async with pg_connection(database) as conn:
            found = {row[0]: tuple(row[1:]) for row in await conn.fetch(query)}
    else:
        import sqlite3

        assert database.path is not None
        conn = sqlite3.connect(database.path)
        try:
            found = {row[0]: tuple(row[1:]) for row in conn.execute(query).fetchall()}
        finally:
            conn.close()
    for thread_id, (reply_id, prompt) in replies.items():
        expected = (reply_id, None, demo_reply_text(prompt), history + 2)
        if found.get(thread_id) != expected:
            raise CheckFailed(f"thread {thread_id}: stored {found.get(thread_id)}, expected {expected}")


async def run(ctx: Context, backend: Backend) -> list[Row]:
    plan = ctx.plan
    per_server = plan.turn_warmup + plan.turn_single + plan.turn_concurrency + plan.turn_saturation
    database = await ctx.factory.create(backend, "turn")
    ctx.log(f"turn/{backend}: seeding {2 * per_server} threads of {plan.turn_history} messages")
    history = conversation(plan.turn_history)
    await seed_threads(database, [ThreadSeed("turn-template", BENCH_USER, history)])
    mine_ids = await clone_thread(database, "turn-template", "tck-", per_server)
    floor_ids = await clone_thread(database, "turn-template", "tfl-", per_server)
    await analyze(database)
    encoded = orjson.dumps(history)[1:-1]
    turns = {"chatkeep": _Turns(iter(mine_ids), encoded), "floor": _Turns(iter(floor_ids), encoded)}
    specs = [chatkeep_spec(database.chatkeep_url, BENCH_USER), floor_spec(database, BENCH_USER)]
    async with running(specs, ctx.logdir, f"turn-{backend}") as (chatkeep, floor):
        servers: dict[str, ServerProcess] = {"chatkeep": chatkeep, "floor": floor}
        single = {name: await connect(server) for name, server in servers.items()}
        for _ in range(plan.turn_warmup):
            for name in servers:
                await turns[name].one(single[name])
        if turns["chatkeep"].frame_types != turns["floor"].frame_types:
            raise CheckFailed(
                f"chatkeep and the floor stream different frames: {turns['chatkeep'].frame_types} vs "
                f"{turns['floor'].frame_types}"
            )
        latencies: dict[str, list[float]] = {"chatkeep": [], "floor": []}
        rates: dict[str, tuple[int, float]] = {}
        async with ctx.profiler.record(chatkeep, f"turn-{backend}"):
            for i in range(plan.turn_single):
                for name in ("chatkeep", "floor") if i % 2 == 0 else ("floor", "chatkeep"):
                    latencies[name].append(await turns[name].one(single[name]))
            ctx.log(f"turn/{backend}: one client: chatkeep p50 {ms(latencies['chatkeep']).p50:.1f} ms, "
                    f"floor {ms(latencies['floor']).p50:.1f} ms")  # fmt: skip
            for name, server in servers.items():
                pool = [await connect(server) for _ in range(plan.turn_concurrency)]
                await _saturate(pool, turns[name], plan.turn_concurrency, 30)  # warm the pool
                rates[name] = await _saturate(pool, turns[name], plan.turn_saturation, plan.turn_seconds)
                ctx.log(f"turn/{backend}: saturated {name}: {rates[name][0] / rates[name][1]:.1f} turns/s")
                for connection in pool:
                    connection.close()
        for connection in single.values():
            connection.close()
    await _verify(database, plan.turn_history, {**turns["chatkeep"].replies, **turns["floor"].replies})
    await ctx.factory.drop(database)
    lat_mine, lat_floor = ms(latencies["chatkeep"]), ms(latencies["floor"])
    rate_mine, rate_floor = (rates[n][0] / rates[n][1] for n in ("chatkeep", "floor"))
    case = f"{plan.turn_history}-message history, demo model at 0 ms"
    return [
        Row(SCENARIO, f"{case}, 1 client", database.label, "p50 latency", "ms", lat_mine.p50, lat_floor.p50,
            Target("ratio<=", 2.0), details={"chatkeep": lat_mine.as_dict(), "floor": lat_floor.as_dict()}),
        Row(SCENARIO, f"{case}, 1 client", database.label, "p99 latency", "ms", lat_mine.p99, lat_floor.p99),
        Row(SCENARIO, f"{case}, {plan.turn_concurrency} clients (saturation)", database.label, "throughput",
            "turns/s", rate_mine, rate_floor, Target("ratio>=", 0.5),
            details={"chatkeep_turns": rates["chatkeep"][0], "floor_turns": rates["floor"][0]}),
    ]  # fmt: skip
