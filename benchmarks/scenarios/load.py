"""Scenarios 1 and 5a: loading a thread of 10, 100, 1,000 and 10,000 messages through both read APIs.

* ``GET /api/chat/{id}/messages`` (useChat's initial messages: the active branch as UIMessages);
* ``GET /api/threads/{id}/messages`` (assistant-ui's history adapter: every message as a row).

Each thread alternates a user text and a four-part assistant reply (:mod:`benchmarks.data`). chatkeep and the
floor are asked in turn, request by request, on one keep-alive connection each. Checks: both answer the same JSON,
and the UIMessages are exactly the ones seeded.
"""

from __future__ import annotations

from typing import Any

from benchmarks.data import BENCH_USER, conversation
from benchmarks.databases import Backend
from benchmarks.harness import CheckFailed, Context, connect, expect, floor_spec, ms, timed_pairs
from benchmarks.report import Row, Target
from benchmarks.seed import ThreadSeed, analyze, seed_threads
from benchmarks.servers import chatkeep_spec, running
from benchmarks.stats import linear_fit

__all__ = ["ENDPOINTS", "run"]

ENDPOINTS = ("/api/chat/{id}/messages", "/api/threads/{id}/messages")
SCENARIO_LOAD = "1. Load a thread"
SCENARIO_GROWTH = "5. Growth"


def _check(endpoint: str, size: int, mine: Any, floor: Any) -> None:
    if mine != floor:
        raise CheckFailed(f"{endpoint} with {size} messages: chatkeep and the floor answer differently")
    expected = conversation(size)
    if endpoint.startswith("/api/chat/"):
        if mine != expected:
            raise CheckFailed(f"{endpoint}: the {size} messages are not the ones seeded")
        return
    got = [{"id": row["id"], **row["content"]} for row in mine]
    parents = [row["parent_id"] for row in mine]
    if got != expected or parents != [None, *(m["id"] for m in expected[:-1])]:
        raise CheckFailed(f"{endpoint}: the {size} rows are not the messages seeded")


async def run(ctx: Context, backend: Backend) -> list[Row]:
    plan = ctx.plan
    database = await ctx.factory.create(backend, "load")
    ctx.log(f"load/{backend}: seeding threads of {', '.join(str(n) for n in plan.load_sizes)} messages")
    await seed_threads(database, [ThreadSeed(f"load-{n}", BENCH_USER, conversation(n)) for n in plan.load_sizes])
    await analyze(database)
    p50s: dict[tuple[str, int], tuple[float, float]] = {}
    rows: list[Row] = []
    specs = [chatkeep_spec(database.chatkeep_url, BENCH_USER), floor_spec(database, BENCH_USER)]
    async with running(specs, ctx.logdir, f"load-{backend}") as (chatkeep, floor):
        mine, theirs = await connect(chatkeep), await connect(floor)
        async with ctx.profiler.record(chatkeep, f"load-{backend}"):
            for endpoint in ENDPOINTS:
                for size in plan.load_sizes:
                    path = endpoint.format(id=f"load-{size}")
                    a = expect(await mine.request("GET", path), 200, path).json()
                    b = expect(await theirs.request("GET", path), 200, path).json()
                    _check(endpoint, size, a, b)
                    iterations = plan.load_iterations_for(size)
                    warmup = plan.load_warmup_for(size)
                    times_mine, times_floor = await timed_pairs(mine, theirs, path, iterations, warmup)
                    ours, base = ms(times_mine), ms(times_floor)
                    p50s[(endpoint, size)] = (ours.p50, base.p50)
                    ctx.log(f"load/{backend}: {path}: chatkeep p50 {ours.p50:.1f} ms, floor {base.p50:.1f} ms")
                    if size == 1_000:
                        rows.append(
                            Row(
                                SCENARIO_LOAD,
                                f"GET {endpoint}, 1,000 messages",
                                database.label,
                                "p50 latency",
                                "ms",
                                ours.p50,
                                base.p50,
                                Target("ratio<=", 1.5) if backend == "postgres" else None,
                                details={"chatkeep": ours.as_dict(), "floor": base.as_dict()},
                            )
                        )
                        rows.append(
                            Row(SCENARIO_LOAD, f"GET {endpoint}, 1,000 messages", database.label, "p99 latency",
                                "ms", ours.p99, base.p99)
                        )  # fmt: skip
        mine.close()
        theirs.close()
    rows += _growth_rows(database.label, plan.load_sizes, p50s)
    await ctx.factory.drop(database)
    return rows


def _growth_rows(label: str, sizes: tuple[int, ...], p50s: dict[tuple[str, int], tuple[float, float]]) -> list[Row]:
    rows = []
    for endpoint in ENDPOINTS:
        ours = [p50s[(endpoint, n)][0] for n in sizes]
        base = [p50s[(endpoint, n)][1] for n in sizes]
        xs = [n / 1000 for n in sizes]
        slope, intercept, r2 = linear_fit(xs, ours)
        floor_slope, _, _ = linear_fit(xs, base)
        # Linear means a message costs the same whatever the thread's length: compare the per-message cost of the
        # largest thread with that of the 1,000-message one.
        biggest, reference = sizes[-1], 1_000 if 1_000 in sizes else sizes[-2]
        per_message, floor_per_message = (
            (p50s[(endpoint, biggest)][i] / biggest) / (p50s[(endpoint, reference)][i] / reference) for i in (0, 1)
        )
        details = {
            "sizes": list(sizes),
            "chatkeep_p50_ms": ours,
            "floor_p50_ms": base,
            "intercept_ms": intercept,
            "r_squared": r2,
            f"per_message_cost_{biggest}_vs_{reference}": per_message,
        }
        rows.append(
            Row(SCENARIO_GROWTH, f"GET {endpoint}: slope of p50 over {sizes[0]:,}–{biggest:,} messages", label,
                "slope", "ms per 1,000 messages", slope, floor_slope, details=details)
        )  # fmt: skip
        rows.append(
            Row(SCENARIO_GROWTH, f"GET {endpoint}: linearity", label,
                f"cost per message at {biggest:,} ÷ at {reference:,}", "", per_message, floor_per_message,
                Target("value<=", 1.25), details=details)
        )  # fmt: skip
        for n, ck, fl in zip(sizes, ours, base, strict=True):
            rows.append(Row(SCENARIO_GROWTH, f"GET {endpoint}, {n:,} messages", label, "p50 latency", "ms", ck, fl))
    return rows
