"""How much each scenario does: the full plan (the report in the README), and a quick one for development."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Plan", "StreamLevel"]


@dataclass(frozen=True)
class StreamLevel:
    streams: int
    chunks: int
    delay_ms: float
    #: batches run one after the other (a single stream uses too little CPU to measure in one go)
    repeat: int = 1

    @property
    def label(self) -> str:
        return f"{self.streams:,} × {self.chunks} chunks @ {self.delay_ms:g} ms"


@dataclass(frozen=True)
class Plan:
    # 1 and 5: loading a thread, and how that grows
    load_sizes: tuple[int, ...] = (10, 100, 1_000, 10_000)
    #: measured requests per size (per server and endpoint), after ``load_warmup``
    load_iterations: tuple[tuple[int, int], ...] = ((10, 60), (100, 60), (1_000, 40), (10_000, 15))
    load_warmup: int = 3
    # 2: appending messages
    append_clients: int = 32
    append_seconds: float = 4.0
    append_rounds: int = 2
    # 3: a chat turn
    turn_history: int = 200
    turn_single: int = 30
    turn_warmup: int = 4
    turn_concurrency: int = 16
    #: turns per server at saturation (each on a fresh 200-message thread), or ``turn_seconds``, whichever first
    turn_saturation: int = 160
    turn_seconds: float = 10.0
    # 4: streaming
    stream_levels: tuple[StreamLevel, ...] = (
        StreamLevel(1, 200, 10, repeat=3),
        StreamLevel(100, 100, 20),
        StreamLevel(500, 100, 20),
        StreamLevel(1_000, 100, 20),
    )
    #: SQLite runs only these stream counts (one process, one writer: the PostgreSQL levels are the target)
    sqlite_stream_counts: tuple[int, ...] = (1, 100)
    # 5: the thread list
    list_threads: int = 100_000
    list_page_size: int = 50
    list_deep_page: int = 2_000
    list_iterations: int = 100

    def load_iterations_for(self, size: int) -> int:
        return dict(self.load_iterations).get(size, 10)

    def load_warmup_for(self, size: int) -> int:
        return 1 if size >= 5_000 else self.load_warmup

    @classmethod
    def quick(cls) -> Plan:
        """A few minutes, for checking that everything runs (the numbers are rough)."""
        return cls(
            load_sizes=(10, 100, 1_000, 2_000),
            load_iterations=((10, 10), (100, 10), (1_000, 8), (2_000, 4)),
            load_warmup=1,
            append_seconds=1.5,
            append_rounds=1,
            turn_single=6,
            turn_warmup=2,
            turn_saturation=40,
            turn_seconds=4.0,
            stream_levels=(StreamLevel(1, 50, 10, repeat=2), StreamLevel(100, 50, 20), StreamLevel(300, 50, 20)),
            sqlite_stream_counts=(1,),
            list_threads=20_000,
            list_deep_page=400,
            list_iterations=10,
        )
