"""Scenario 5b: the thread list of a user with 100,000 threads, page 1 against page 2,000 (50 threads a page).

Keyset pagination should make a deep page cost what the first one does. The cursor of page 2,000 is found the way
a client would: following ``X-Next-Cursor`` (1,000 threads a page, then 950). Then both pages are fetched in
turn from chatkeep and the floor. Checks: both servers return the same threads, page 1 the newest 50 and page 2,000
the oldest 50.
"""

from __future__ import annotations

from typing import Any

from benchmarks.client import Connection
from benchmarks.data import LIST_USER
from benchmarks.databases import Backend
from benchmarks.harness import CheckFailed, Context, connect, expect, floor_spec, ms, timed_rounds
from benchmarks.report import Row, Target
from benchmarks.seed import analyze, seed_bare_threads
from benchmarks.servers import chatkeep_spec, running

__all__ = ["run"]

SCENARIO = "5. Growth"


async def _cursor_before(connection: Connection, skip: int) -> str:
    """Follow ``X-Next-Cursor`` until ``skip`` threads are behind; returns the cursor of the next page."""
    cursor = ""
    seen = 0
    while seen < skip:
        limit = min(1000, skip - seen)
        path = f"/api/threads?limit={limit}" + (f"&after={cursor}" if cursor else "")
        response = expect(await connection.request("GET", path), 200, path)
        page: Any = response.json()
        seen += len(page)
        cursor = response.headers.get("x-next-cursor", "")
        if not cursor or len(page) != limit:
            raise CheckFailed(f"{path}: the listing ended after {seen} threads")
    return cursor


async def run(ctx: Context, backend: Backend) -> list[Row]:
    plan = ctx.plan
    database = await ctx.factory.create(backend, "list")
    ctx.log(f"list/{backend}: seeding {plan.list_threads:,} threads")
    ids = await seed_bare_threads(database, LIST_USER, "l", plan.list_threads)
    await analyze(database)
    size, deep = plan.list_page_size, plan.list_deep_page
    specs = [chatkeep_spec(database.chatkeep_url, LIST_USER), floor_spec(database, LIST_USER)]
    async with running(specs, ctx.logdir, f"list-{backend}") as (chatkeep, floor):
        mine, theirs = await connect(chatkeep), await connect(floor)
        first = f"/api/threads?limit={size}"
        deep_paths = []
        for connection in (mine, theirs):
            deep_paths.append(f"{first}&after={await _cursor_before(connection, size * (deep - 1))}")
        newest = list(reversed(ids))
        for path, expected in ((first, newest[:size]), (deep_paths[0], newest[size * (deep - 1) : size * deep])):
            got: Any = expect(await mine.request("GET", path), 200, path).json()
            if [t["id"] for t in got] != expected:
                raise CheckFailed(f"chatkeep {path}: not the expected threads")
        for a, b in ((first, first), (deep_paths[0], deep_paths[1])):
            if (await mine.request("GET", a)).json() != (await theirs.request("GET", b)).json():
                raise CheckFailed(f"chatkeep {a} and the floor {b} list different threads")
        async with ctx.profiler.record(chatkeep, f"list-{backend}"):
            # the floor's cursor differs from chatkeep's: each deep page is asked with its own server's cursor
            pages = [(mine, first), (theirs, first), (mine, deep_paths[0]), (theirs, deep_paths[1])]
            p1_ck, p1_fl, deep_mine, deep_floor = await timed_rounds(pages, plan.list_iterations, 3)
        mine.close()
        theirs.close()
    await ctx.factory.drop(database)
    p1_mine, p1_floor = ms(p1_ck), ms(p1_fl)
    deep_m, deep_f = ms(deep_mine), ms(deep_floor)
    ctx.log(f"list/{backend}: page 1 {p1_mine.p50:.1f} ms, page {deep} {deep_m.p50:.1f} ms "
            f"(floor {p1_floor.p50:.1f} / {deep_f.p50:.1f})")  # fmt: skip
    case = f"{plan.list_threads:,} threads, {size} a page"
    return [
        Row(SCENARIO, f"GET /api/threads: {case}", database.label, f"p50 page {deep:,} ÷ p50 page 1", "",
            deep_m.p50 / p1_mine.p50, deep_f.p50 / p1_floor.p50, Target("value<", 1.3),
            details={"chatkeep_page1_ms": p1_mine.as_dict(), f"chatkeep_page{deep}_ms": deep_m.as_dict(),
                     "floor_page1_ms": p1_floor.as_dict(), f"floor_page{deep}_ms": deep_f.as_dict()}),
        Row(SCENARIO, f"GET /api/threads: {case}, page 1", database.label, "p50 latency", "ms", p1_mine.p50,
            p1_floor.p50),
        Row(SCENARIO, f"GET /api/threads: {case}, page {deep:,}", database.label, "p50 latency", "ms", deep_m.p50,
            deep_f.p50),
    ]  # fmt: skip
