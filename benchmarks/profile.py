"""``--profile``: sample chatkeep's server process with py-spy while a scenario drives it, and summarize where its
CPU time goes (by function, self and inclusive, and by package).

py-spy attaches to the running server by pid (no code change, no restart), samples only threads that are running
(an event loop waiting in ``epoll`` is not counted), and does not pause the process (``--nonblocking``), so the
profile costs the server little. The raw stacks are kept next to the summary (``*.folded``, the collapsed format
flamegraph tools read).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from benchmarks.servers import ServerProcess

__all__ = ["Profiler", "summarize_folded"]

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" and "/" in tail else tail
    return path


def _package(path: str) -> str:
    short = _short(path)
    if short.startswith("chatkeep/"):
        parts = short.split("/")
        return "/".join(parts[:2]).removesuffix(".py") if len(parts) > 2 else short.removesuffix(".py")
    return short.split("/", 1)[0].removesuffix(".py")


def _frame_key(frame: str) -> tuple[str, str, str]:
    """``(function, file, line)`` of a py-spy frame ``function (file:line)``."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, "", ""
    line = frame.rsplit(":", 1)[1].rstrip(")") if ":" in frame else ""
    return match["function"], match["file"], line


#: The Python frame py-spy shows when the CPU is in C code called from the event loop itself (uvloop, the
#: asyncpg protocol, socket I/O): no Python frame of its own.
_LOOP = "Runner.run (asyncio/runners.py)"


def summarize_folded(text: str, top: int = 30) -> str:
    """A plain-text summary of collapsed stacks (``frame;frame;… count`` per line, root first): self time by
    package, by line, and inclusive time of chatkeep's own functions."""
    packages: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for entry in text.splitlines():
        stack, _, count_text = entry.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_key(frame) for frame in stack.split(";")]
        frames = [f for f in frames if f[1]]  # drop the "process"/"thread" roots py-spy adds
        if not frames:
            continue
        total += count
        function, path, line = frames[-1]
        key = f"{function} ({_short(path)})"
        if key == _LOOP:
            packages["(event loop and C extensions: uvloop, asyncpg protocol)"] += count
        else:
            packages[_package(path)] += count
        lines[f"{function} ({_short(path)}:{line})"] += count
        for own in {f"{f} ({_short(p)})" for f, p, _ in frames if _short(p).startswith("chatkeep/")}:
            inclusive[own] += count
    if not total:
        return "no samples (the server was idle or py-spy could not attach)\n"

    def block(title: str, counter: Counter[str]) -> list[str]:
        rows = [title, ""]
        rows += [f"{100 * count / total:6.1f}%  {key}" for key, count in counter.most_common(top)]
        return [*rows, ""]

    out = [f"{total} samples of the server's CPU time (py-spy, idle time excluded)", ""]
    out += block("Self time by package", packages)
    out += block("Self time by line (C code is charged to the Python line that called it)", lines)
    out += block("Inclusive time of chatkeep's functions (the function and everything it calls)", inclusive)
    return "\n".join(out)


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


class Profiler:
    """Records one profile per labelled section when enabled; a no-op otherwise."""

    def __init__(self, enabled: bool, outdir: Path, rate: int = 200) -> None:
        self.enabled = enabled
        self.outdir = outdir
        self.rate = rate
        self.written: dict[str, str] = {}
        #: a first line for every summary (which chatkeep, when, on what)
        self.heading = ""

    @contextlib.asynccontextmanager
    async def record(self, server: ServerProcess, label: str) -> AsyncIterator[None]:
        py_spy = _py_spy() if self.enabled else None
        if py_spy is None:
            if self.enabled:
                print("profile: py-spy not found; install the 'bench' extra", file=sys.stderr)
            yield
            return
        self.outdir.mkdir(parents=True, exist_ok=True)
        folded = self.outdir / f"{label}.folded"
        command = [
            py_spy, "record", "--pid", str(server.pid), "--rate", str(self.rate), "--format", "raw",
            "--nonblocking", "--output", str(folded),
        ]  # fmt: skip
        recorder = _spawn(command)
        await asyncio.sleep(0.5)  # attached
        try:
            yield
        finally:
            recorder.send_signal(signal.SIGINT)
            try:
                _, errors = recorder.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                recorder.kill()
                _, errors = recorder.communicate()
            if folded.exists():
                summary = self.outdir / f"{label}.txt"
                heading = f"{label}: {self.heading}\n\n" if self.heading else ""
                summary.write_text(heading + summarize_folded(folded.read_text()))
                self.written[label] = str(summary)
            else:
                print(
                    f"profile {label}: py-spy wrote nothing: {errors.decode(errors='replace')[-500:]}", file=sys.stderr
                )
