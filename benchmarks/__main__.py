"""``python -m benchmarks`` (what ``scripts/bench`` runs): every scenario on PostgreSQL and SQLite, then the report
in ``benchmarks/results/`` (Markdown and JSON) and the table on stdout."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import orjson
import uvloop

from benchmarks.databases import Backend, DatabaseFactory, postgres_admin_url
from benchmarks.harness import Context
from benchmarks.machine import describe
from benchmarks.plan import Plan
from benchmarks.profile import Profiler
from benchmarks.report import Report, Row
from benchmarks.scenarios import append, load, streams, threads_list, turn
from benchmarks.servers import ROOT

Scenario = Callable[[Context, Backend], Awaitable[list[Row]]]

SCENARIOS: dict[str, Scenario] = {
    "load": load.run,
    "append": append.run,
    "turn": turn.run,
    "streams": streams.run,
    "list": threads_list.run,
}
BACKENDS: tuple[Backend, ...] = ("postgres", "sqlite")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"scenarios to run (of {', '.join(SCENARIOS)})")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="postgres, sqlite or both")
    parser.add_argument("--quick", action="store_true", help="a small plan, to check that everything runs")
    parser.add_argument("--profile", action="store_true", help="sample chatkeep with py-spy in every scenario")
    parser.add_argument("--output", default=None, help="report name in benchmarks/results (default: latest)")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    args.backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = [n for n in args.only if n not in SCENARIOS] + [b for b in args.backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")
    return args


async def _run(args: argparse.Namespace, admin_url: str | None, workdir: Path, logdir: Path, results: Path) -> Report:
    factory = DatabaseFactory(admin_url, workdir)
    plan = Plan.quick() if args.quick else Plan()
    ctx = Context(plan, factory, logdir, Profiler(args.profile, results / "profiles"))
    options = {
        key: value
        for key, value in {
            "only": args.only if args.only != list(SCENARIOS) else None,
            "backends": args.backends if args.backends != list(BACKENDS) else None,
            "quick": args.quick or None,
            "profile": args.profile or None,
        }.items()
        if value
    }
    started = time.monotonic()
    rows: list[Row] = []
    failures: list[str] = []
    try:
        if "postgres" in args.backends:
            await factory._prepare_postgres()
        report = Report(describe(factory.postgres_version), options)
        m = report.machine
        ctx.profiler.heading = f"chatkeep {m['chatkeep']}, {m['date']}, {m['cpu']} ({m['cores']} cores)"
        for name in args.only:
            for backend in args.backends:
                ctx.log(f"{name}/{backend}: starting")
                try:
                    rows += await SCENARIOS[name](ctx, backend)
                except Exception as exc:
                    traceback.print_exc()
                    failures.append(f"{name} on {backend}: {type(exc).__name__}: {exc}")
                    ctx.log(f"{name}/{backend}: FAILED: {exc}")
    finally:
        await factory.close()
    report.rows = rows
    report.failures = failures
    report.profiles = ctx.profiler.written
    report.seconds = time.monotonic() - started
    return report


@contextlib.contextmanager
def _one_run_at_a_time() -> Iterator[None]:
    """Hold a machine-wide lock for the whole run. Two runs at once would measure each other, and each drops the
    other's ``bench_*`` databases on the shared PostgreSQL server; a second run waits for the first instead."""
    with open(Path(tempfile.gettempdir()) / "chatkeep-bench.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another benchmark run is going on on this machine; waiting for it to end", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    with _one_run_at_a_time():
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    # Only a whole run without a profiler attached is "latest": py-spy's sampling slows chatkeep down.
    whole = not args.quick and not args.profile and args.only == list(SCENARIOS)
    name = args.output or ("latest" if whole else "partial")
    logdir = results / "logs"
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir()
    if args.profile:
        shutil.rmtree(results / "profiles", ignore_errors=True)
    with (
        tempfile.TemporaryDirectory(prefix="chatkeep-bench-") as tmp,
        postgres_admin_url() if "postgres" in args.backends else contextlib.nullcontext(None) as admin_url,
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        postgres = admin_url if "postgres" in args.backends else None
        report = runner.run(_run(args, postgres, Path(tmp), logdir, results))
    markdown = report.markdown()
    (results / f"{name}.md").write_text(markdown)
    (results / f"{name}.json").write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
    print(markdown)
    print(f"written: benchmarks/results/{name}.md and {name}.json", file=sys.stderr)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
