"""The ``chatkeep`` command: database migrations and clear errors (``serve`` runs in test_js_clients.py)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from chatkeep.cli import main
from chatkeep.store.migrate import head_revision


def test_db_upgrade_then_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    before = runner.invoke(main, ["db", "current", "--database-url", url])
    assert before.exit_code == 3, before.output  # the schema is not the newest
    assert "(empty database)" in before.output and "needs 'chatkeep db upgrade'" in before.output

    upgraded = runner.invoke(main, ["db", "upgrade", "--database-url", url])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"database is at revision {head_revision()}" in upgraded.output

    after = runner.invoke(main, ["db", "current", "--database-url", url])
    assert after.exit_code == 0, after.output
    assert "up to date" in after.output


def test_database_url_from_the_environment(tmp_path: Path) -> None:
    db = tmp_path / "env.db"
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATABASE_URL": f"sqlite:///{db}"})
    assert result.exit_code == 0, result.output
    assert db.exists()


def test_unsupported_database_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["db", "upgrade", "--database-url", "mysql://root@localhost/x"])
    assert result.exit_code == 1
    assert "unsupported database 'mysql'" in result.output
    assert "Traceback" not in result.output


def test_unreachable_postgres_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["db", "current", "--database-url", "postgres://nobody@127.0.0.1:1/none"])
    assert result.exit_code == 1
    assert "127.0.0.1:1: connection refused" in result.output


def test_a_database_without_the_schema_says_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["export", "--user", "u1", "--database-url", f"sqlite:///{tmp_path / 'empty.db'}"]
    )
    assert result.exit_code == 1
    assert "run 'chatkeep db upgrade'" in result.output
