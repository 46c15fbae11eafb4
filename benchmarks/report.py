"""Result rows, targets, and the report (Markdown and JSON).

Every row compares chatkeep's figure with the floor's, measured in the same run: ``ratio`` is always
chatkeep ÷ floor (so for times lower is better, for throughputs higher is better). A row whose correctness checks
failed is marked invalid: its numbers mean nothing and its target is not met.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Report", "Row", "Target"]

TargetKind = Literal["ratio<=", "ratio>=", "value<", "value<="]


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    bound: float
    unit: str = ""

    def describe(self) -> str:
        if self.kind == "ratio<=":
            return f"≤ {self.bound:g}×"
        if self.kind == "ratio>=":
            return f"≥ {self.bound:g}×"
        op = "<" if self.kind == "value<" else "≤"
        return f"{op} {self.bound:g}{(' ' + self.unit) if self.unit else ''}"

    def met(self, value: float, ratio: float | None) -> bool:
        if self.kind == "ratio<=":
            return ratio is not None and ratio <= self.bound
        if self.kind == "ratio>=":
            return ratio is not None and ratio >= self.bound
        if self.kind == "value<":
            return value < self.bound
        return value <= self.bound


@dataclass
class Row:
    scenario: str
    case: str
    backend: str
    metric: str
    unit: str
    chatkeep: float
    floor: float | None = None
    target: Target | None = None
    valid: bool = True
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.floor is None or not self.floor or math.isnan(self.floor) or math.isnan(self.chatkeep):
            return None
        return self.chatkeep / self.floor

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.valid and self.target.met(self.chatkeep, self.ratio)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "case": self.case,
            "backend": self.backend,
            "metric": self.metric,
            "unit": self.unit,
            "chatkeep": _clean(self.chatkeep),
            "floor": _clean(self.floor),
            "ratio": _clean(self.ratio),
            "target": self.target.describe() if self.target else None,
            "met": self.met,
            "valid": self.valid,
            "notes": self.notes,
            "details": _clean(self.details),
        }


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become ``None``."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _number(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _met(row: Row) -> str:
    if not row.valid:
        return "**invalid**"
    if row.met is None:
        return ""
    return "yes" if row.met else "**no**"


@dataclass
class Report:
    machine: dict[str, Any]
    options: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def table(self, rows: list[Row]) -> list[str]:
        lines = [
            "| scenario | case | DB | metric | chatkeep | floor | ratio | target | met |",
            "| --- | --- | --- | --- | ---: | ---: | ---: | --- | --- |",
        ]
        for row in rows:
            metric = f"{row.metric} ({row.unit})" if row.unit else row.metric
            lines.append(
                f"| {row.scenario} | {row.case} | {row.backend} | {metric} | {_number(row.chatkeep)} | "
                f"{_number(row.floor)} | {_ratio(row.ratio)} | {row.target.describe() if row.target else ''} | "
                f"{_met(row)} |"
            )
        return lines

    def summary_line(self) -> str:
        targets = [row for row in self.rows if row.target is not None]
        met = sum(1 for row in targets if row.met)
        return f"{met} of {len(targets)} targets met" + (
            f"; {len(self.failures)} scenario(s) failed" if self.failures else ""
        )

    def markdown(self) -> str:
        m = self.machine
        lines = [
            "# chatkeep benchmarks",
            "",
            f"Run {m.get('date', '?')} on {m.get('cpu', '?')} ({m.get('cores', '?')} cores), {m.get('ram', '?')} RAM, "
            f"{m.get('os', '?')}; Python {m.get('python', '?')}, PostgreSQL {m.get('postgresql', '?')}, "
            f"SQLite {m.get('sqlite', '?')}; chatkeep {m.get('chatkeep', '?')}. Load average at start: "
            f"{m.get('load_average', '?')}. Took {self.seconds / 60:.1f} min"
            + (f" (options: {self.options})." if self.options else "."),
            "",
            f"**{self.summary_line()}.** Ratio = chatkeep ÷ floor, both measured in this run; the floors are minimal "
            "Starlette routes over the raw driver (see `benchmarks/README.md`).",
            "",
            "## Targets",
            "",
            *self.table([row for row in self.rows if row.target is not None]),
            "",
            "## All measurements",
            "",
            *self.table(self.rows),
        ]
        notes = [(row, note) for row in self.rows for note in row.notes]
        if notes:
            lines += ["", "## Notes", ""]
            lines += [f"- {row.scenario}, {row.case}, {row.backend}: {note}" for row, note in notes]
        if self.failures:
            lines += ["", "## Failed scenarios", ""]
            lines += [f"- {failure}" for failure in self.failures]
        if self.profiles:
            lines += ["", "## Profiles (chatkeep, py-spy)", ""]
            lines += [f"- {label}: `{path}`" for label, path in self.profiles.items()]
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "options": self.options,
            "seconds": round(self.seconds, 1),
            "summary": self.summary_line(),
            "rows": [row.as_dict() for row in self.rows],
            "failures": self.failures,
            "profiles": self.profiles,
        }
