"""Scenario 4: streaming. N concurrent ``POST /api/chat`` streams of the ``demo`` model (``count to <chunks>``:
one text chunk every ``CHATKEEP_DEMO_DELAY_MS``) on one chatkeep process, every reply stored; the same load on
the streaming floor (:mod:`benchmarks.floors.sse`, which only sends the frames).

Each level starts fresh server processes (so memory is measured from a clean baseline), warms them with a batch
of short streams, opens all N connections, then sends all N requests at once. Measured:

* **CPU per 1,000 chunks**: the server process's user+system CPU time over the level ÷ text chunks delivered
  (everything the server did for those streams, storing included);
* **extra delay per chunk**: for each text chunk, the time since the previous one (the first: since the
  stream's first frame) minus the model's spacing, at the client: what the server added to the model's schedule;
* **time to first chunk**: request sent → first frame received;
* **memory per open stream**: (peak RSS while the streams run − RSS before) ÷ streams answered with a 200.

A level may run its batch of N streams more than once (``repeat``), one batch after the other: a single stream
uses too little CPU to measure in one go.

Checks: every stream ends with ``[DONE]`` and carries all ``chunks`` numbers; every reply chatkeep announced is
stored in full (text and status) under its ``messageId``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any

import orjson

from benchmarks.client import Connection, SseCollector
from benchmarks.data import BENCH_USER, count_prompt, count_reply_text
from benchmarks.databases import Backend, BenchDatabase, pg_connection
from benchmarks.harness import Context, connect, ms, sse_floor_spec
from benchmarks.plan import StreamLevel
from benchmarks.report import Row, Target
from benchmarks.servers import ServerProcess, chatkeep_spec, running
from benchmarks.stats import Summary

__all__ = ["run"]

SCENARIO = "4. Stream"
#: Short streams run before measuring: they warm the code paths and grow chatkeep's database pool to its limit
#: (20 connections), so the memory measured is what each stream adds, not a one-off cost.
_WARMUP_STREAMS = 24
_WARMUP_CHUNKS = 5


@dataclass
class LevelResult:
    cpu_ms_per_1000: float
    memory_kib_per_stream: float
    extra_delay: Summary
    first_chunk: Summary
    seconds: float
    failures: list[str]


def _body(thread_id: str, chunks: int) -> bytes:
    return orjson.dumps({"id": thread_id, "messages": [count_prompt(chunks)], "trigger": "submit-message"})


async def _stream(connection: Connection, thread_id: str, level: StreamLevel, outcomes: dict[str, Any]) -> None:
    """One stream; its outcome is ``(response, collector)``, or the exception it failed with."""
    collector = SseCollector()
    try:
        response = await connection.request("POST", "/api/chat", _body(thread_id, level.chunks), sink=collector,
                                             limit_s=600)  # fmt: skip
    except Exception as exc:
        outcomes[thread_id] = exc
        return
    outcomes[thread_id] = (response, collector)


async def _sample_rss(server: ServerProcess, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(Exception):
            peak[0] = max(peak[0], server.rss())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)


async def _level(
    ctx: Context, server: ServerProcess, level: StreamLevel, prefix: str
) -> tuple[LevelResult, dict[str, str]]:
    """Run one level against one server; returns its figures and, per thread, the reply's ``messageId``."""
    warm: dict[str, Any] = {}
    warm_connections = [await connect(server) for _ in range(_WARMUP_STREAMS)]
    short = StreamLevel(_WARMUP_STREAMS, _WARMUP_CHUNKS, level.delay_ms)
    await asyncio.gather(*(_stream(c, f"{prefix}-warm-{i}", short, warm) for i, c in enumerate(warm_connections)))
    for connection in warm_connections:
        connection.close()
    await asyncio.sleep(0.5)  # let the server settle (and finish storing the warm-up replies)
    cpu_before, rss_before = server.cpu_seconds(), server.rss()
    peak = [rss_before]
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sample_rss(server, peak, stop))
    results: dict[str, Any] = {}
    names: list[str] = []
    started = time.perf_counter()
    for batch in range(level.repeat):
        connections = [await connect(server) for _ in range(level.streams)]
        batch_names = [f"{prefix}-{batch}-{i}" for i in range(level.streams)]
        names += batch_names
        await asyncio.gather(
            *(_stream(c, name, level, results) for c, name in zip(connections, batch_names, strict=True)),
            return_exceptions=True,
        )
        for connection in connections:
            connection.close()
    seconds = time.perf_counter() - started
    cpu = server.cpu_seconds() - cpu_before
    stop.set()
    await sampler

    spacing = level.delay_ms / 1000
    extra: list[float] = []
    first: list[float] = []
    failures: list[str] = []
    replies: dict[str, str] = {}
    expected = count_reply_text(level.chunks)
    for thread_id in names:
        outcome = results.get(thread_id)
        if not isinstance(outcome, tuple):
            failures.append(f"{thread_id}: {outcome!r}")
            continue
        response, collector = outcome
        if response.status != 200 or not collector.done or collector.full_text != expected:
            failures.append(
                f"{thread_id}: HTTP {response.status}, {len(collector.delta_times)} chunks, done={collector.done}"
            )
            continue
        replies[thread_id] = collector.message_id
        first.append(collector.first_frame_at - response.sent_at)
        previous = collector.first_frame_at
        for moment in collector.delta_times:
            extra.append(moment - previous - spacing)
            previous = moment
    # Per chunk actually sent and per stream actually opened: a refused stream costs little and holds nothing.
    chunks = sum(len(o[1].delta_times) for o in results.values() if isinstance(o, tuple))
    opened = sum(1 for o in results.values() if isinstance(o, tuple) and o[0].status == 200) / level.repeat
    result = LevelResult(
        cpu_ms_per_1000=1000 * cpu / chunks * 1000 if chunks else math.nan,
        memory_kib_per_stream=(peak[0] - rss_before) / 1024 / opened if opened else math.nan,
        extra_delay=ms(extra),
        first_chunk=ms(first),
        seconds=seconds,
        failures=failures,
    )
    return result, replies


async def _stored(database: BenchDatabase, replies: dict[str, str], chunks: int) -> list[str]:
    """The replies that are not stored in full (text, status complete) under their ``messageId``."""
    query = (
        "SELECT m.thread_id, m.id, m.status, p.text_text FROM messages m JOIN parts p ON p.thread_id = m.thread_id "
        "AND p.message_id = m.id WHERE m.role = 'assistant' AND p.type = 'text'"
    )
    if database.backend == "postgres":
        async with pg_connection(database) as conn:
            rows = [tuple(row) for row in await conn.fetch(query)]
    else:
        import sqlite3

        assert database.path is not None
        conn = sqlite3.connect(database.path)
        try:
            rows = conn.execute(query).fetchall()
        finally:
            conn.close()
    found = {row[0]: row[1:] for row in rows}
    expected_text = count_reply_text(chunks)
    return [
        f"{thread_id}: stored {found.get(thread_id, ('nothing',))[:2]}"
        for thread_id, message_id in replies.items()
        if found.get(thread_id) != (message_id, None, expected_text)
    ]


def _rows(
    label: str, level: StreamLevel, mine: LevelResult, floor: LevelResult, valid: bool, note: str | None
) -> list[Row]:
    case = level.label
    notes = [note] if note else []
    many = level.streams >= 100
    delay_target: Target | None = None
    if level.streams == 100 and label == "PostgreSQL":
        delay_target = Target("value<", 20, "ms")
    elif level.streams == 1_000 and label == "PostgreSQL":
        delay_target = Target("ratio<=", 3.0)
    pg = label == "PostgreSQL"
    details = {
        "chatkeep": {"extra_delay_ms": mine.extra_delay.as_dict(), "first_chunk_ms": mine.first_chunk.as_dict(),
                     "seconds": mine.seconds, "failures": mine.failures[:20]},
        "floor": {"extra_delay_ms": floor.extra_delay.as_dict(), "first_chunk_ms": floor.first_chunk.as_dict(),
                  "seconds": floor.seconds, "failures": floor.failures[:20]},
    }  # fmt: skip
    rows = [
        Row(SCENARIO, case, label, "CPU per 1,000 chunks", "ms", mine.cpu_ms_per_1000, floor.cpu_ms_per_1000,
            Target("ratio<=", 2.0) if pg else None, valid, notes, details),
        Row(SCENARIO, case, label, "extra delay per chunk p50", "ms", mine.extra_delay.p50, floor.extra_delay.p50,
            valid=valid),
        Row(SCENARIO, case, label, "extra delay per chunk p99", "ms", mine.extra_delay.p99, floor.extra_delay.p99,
            delay_target, valid),
        Row(SCENARIO, case, label, "time to first chunk p50", "ms", mine.first_chunk.p50, floor.first_chunk.p50,
            valid=valid),
        Row(SCENARIO, case, label, "time to first chunk p99", "ms", mine.first_chunk.p99, floor.first_chunk.p99,
            valid=valid),
    ]  # fmt: skip
    if many:
        rows.append(
            Row(SCENARIO, case, label, "memory per open stream", "KiB", mine.memory_kib_per_stream,
                floor.memory_kib_per_stream, Target("ratio<=", 2.0) if pg else None, valid)
        )  # fmt: skip
    return rows


async def run(ctx: Context, backend: Backend) -> list[Row]:
    database = await ctx.factory.create(backend, "streams")
    levels = ctx.plan.stream_levels
    if backend == "sqlite":
        levels = tuple(level for level in levels if level.streams in ctx.plan.sqlite_stream_counts)
    rows: list[Row] = []
    for level in levels:
        prefix = f"s{level.streams}x{level.chunks}"
        specs = [chatkeep_spec(database.chatkeep_url, BENCH_USER, demo_delay_ms=f"{level.delay_ms:g}")]
        async with running(specs, ctx.logdir, f"streams-{backend}-{level.streams}") as (chatkeep,):
            async with ctx.profiler.record(chatkeep, f"streams-{backend}-{level.streams}"):
                mine, replies = await _level(ctx, chatkeep, level, prefix)
            chatkeep.check_alive()
        missing = await _stored(database, replies, level.chunks)
        async with running([sse_floor_spec(level.delay_ms)], ctx.logdir, f"streams-{backend}-{level.streams}") as (
            floor,
        ):
            theirs, _ = await _level(ctx, floor, level, prefix)
        problems = mine.failures + missing
        valid = not problems and not theirs.failures
        note = None
        if problems:
            note = (
                f"{len(mine.failures)} of {level.streams * level.repeat} streams incomplete, {len(missing)} replies "
                f"not stored in full: {problems[:3]}"
            )
        elif theirs.failures:
            note = f"floor: {theirs.failures[:3]}"
        ctx.log(
            f"streams/{backend} {level.label}: chatkeep CPU {mine.cpu_ms_per_1000:.0f} ms/1k chunks, p99 extra "
            f"{mine.extra_delay.p99:.1f} ms, first chunk p99 {mine.first_chunk.p99:.0f} ms, "
            f"{mine.memory_kib_per_stream:.0f} KiB/stream; floor {theirs.cpu_ms_per_1000:.0f} ms, "
            f"{theirs.extra_delay.p99:.1f} ms, {theirs.first_chunk.p99:.0f} ms, {theirs.memory_kib_per_stream:.0f} KiB"
            + (f"; {note}" if note else "")
        )
        rows += _rows(database.label, level, mine, theirs, valid, note)
    await ctx.factory.drop(database)
    return rows
