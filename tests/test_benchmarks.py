"""Issue #7's acceptance: the benchmark command runs and prints the table, and the README shows the latest report,
with every target it does not meet explained, citing profiles that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from chatkeep.protocol.ids import generate_id

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

#: The heading in the README's "Not met" list that explains a target of each kind: (scenario, DB or None for any,
#: words of the metric) → heading. A target that is not met must have one.
_EXPLAINED_BY = [
    (("1. Load a thread", None, "latency"), "**Loading a thread"),
    (("2. Store messages", None, "throughput"), "**Appends"),
    (("3. Chat turn", "PostgreSQL", ""), "**A chat turn, one client**"),
    (("3. Chat turn", "SQLite", ""), "**A chat turn on SQLite**"),
    (("4. Stream", None, "CPU"), "**Stream CPU per chunk"),
    (("4. Stream", None, "memory"), "**Stream memory"),
    (("4. Stream", None, "delay"), "**Stream delay"),
    (("5. Growth", None, "cost per message"), "**Growth linearity**"),
    (("5. Growth", None, "page"), "**Thread list paging"),
]


def _targets_table(markdown: str) -> list[str]:
    section = markdown.split("## Targets", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def _not_met_section(readme: str) -> str:
    return readme.split("**Not met, and why:**", 1)[1].split("\n## ", 1)[0]


def test_the_benchmark_command_runs_and_prints_the_table() -> None:
    """Every scenario, on a small plan (SQLite: no server to share); the whole suite is ``scripts/bench``."""
    name = f"test-{generate_id(size=8).lower()}"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--quick", "--backends", "sqlite", "--output", name],
            cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "| scenario | case | DB | metric | chatkeep | floor | ratio | target | met |" in done.stdout
        for scenario in ("1. Load a thread", "2. Store messages", "3. Chat turn", "4. Stream", "5. Growth"):
            assert f"| {scenario} |" in done.stdout, scenario
        assert re.search(r"\*\*\d+ of \d+ targets met\.\*\*", done.stdout)
        assert "invalid" not in (RESULTS / f"{name}.md").read_text().lower()
    finally:
        for suffix in ("md", "json"):
            (RESULTS / f"{name}.{suffix}").unlink(missing_ok=True)


def test_the_readme_shows_the_latest_report_and_explains_every_target_not_met() -> None:
    readme = (ROOT / "README.md").read_text()
    latest = (RESULTS / "latest.md").read_text()
    run_line = next(line for line in latest.splitlines() if line.startswith("Run "))
    assert run_line in readme  # the machine it ran on
    table = _targets_table(latest)
    assert "\n".join(table) in readme
    not_met = _not_met_section(readme)
    for row in table[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        scenario, database, metric, met = cells[0], cells[2], cells[3], cells[-1]
        if met == "yes":
            continue
        headings = [
            heading
            for (kind, db, words), heading in _EXPLAINED_BY
            if kind == scenario and db in (None, database) and words in metric
        ]
        assert headings, f"no explanation is defined for {row}"
        assert any(heading in not_met for heading in headings), f"the README does not say why this is not met: {row}"
    cited = re.findall(r"`([\w-]+\.txt)`", not_met)
    assert cited
    for profile in cited:
        assert (RESULTS / "profiles" / profile).is_file(), profile
