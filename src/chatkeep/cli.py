"""The ``chatkeep`` command: ``serve``, ``db upgrade``, ``db current``, ``export``, ``import``, ``users delete``.

Errors chatkeep models (:class:`chatkeep.errors.ChatkeepError`) and invalid settings are shown as one clear line
and exit with code 1, never a traceback; a database that cannot be used is named (its URL with the password
masked, or its file) with the cause and what to do. No output shows a password. ``db current`` exits with 3 when
the schema is not the newest. ``export`` writes JSON lines to stdout (or a file) and everything meant for people
(progress, summaries, refused records) to stderr, so its output can be piped. Progress is a rich bar when stderr
is a terminal, plain summary lines otherwise. See :mod:`chatkeep.store.transfer` for the record format.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from chatkeep.errors import ChatkeepError, DatabaseError
from chatkeep.settings import Settings
from chatkeep.store import display_database_url

if TYPE_CHECKING:
    from chatkeep.chat.service import ChatService
    from chatkeep.store.transfer import ImportReport, RecordResult, Transfer

__all__ = ["main"]

T = TypeVar("T")
console = Console(stderr=True)


def _settings(**overrides: Any) -> Settings:
    from pydantic import ValidationError

    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:  # each setting with its message, never the value (it may be a secret)
        problems = "; ".join(
            f"CHATKEEP_{'.'.join(map(str, error['loc'])).upper()}: {error['msg']}" for error in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from None


def _failure(exc: ChatkeepError) -> click.ClickException:
    """The error as the user of the command should read it: for the database, the operator's ``detail``."""
    return click.ClickException(exc.detail if isinstance(exc, DatabaseError) else exc.message)


def _run(action: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(action())  # type: ignore[arg-type]
    except ChatkeepError as exc:
        raise _failure(exc) from exc


_database_option = click.option(
    "--database-url",
    metavar="URL",
    help="postgres://…, postgresql://… or sqlite:///path. Default: $DATABASE_URL, else ./chatkeep.db.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chatkeep")
def main() -> None:
    """chatkeep keeps AI chat threads and messages in SQLite or PostgreSQL."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@_database_option
@click.option("--model", default=None, help="Model that answers chats (default: demo).")
@click.option(
    "--tools",
    default=None,
    metavar="MODULE:ATTR[,…]",
    help="Tools offered to the model: import paths of @tool functions, lists of them or ToolRegistry objects "
    "(modules in the current folder are found). Default: $CHATKEEP_TOOLS.",
)
@click.option("--no-migrate", is_flag=True, help="Do not bring the schema up to date on start.")
@click.option(
    "--allow-unauthenticated", is_flag=True, help="Listen beyond loopback with no authentication (not recommended)."
)
@click.option(
    "--tune-gc/--no-tune-gc",
    default=None,
    help="Tune the garbage collector for a long-running service (default: on; CHATKEEP_TUNE_GC).",
)
def serve(
    host: str,
    port: int,
    database_url: str | None,
    model: str | None,
    tools: str | None,
    no_migrate: bool,
    allow_unauthenticated: bool,
    tune_gc: bool | None,
) -> None:
    """Run the HTTP service."""
    import uvicorn

    from chatkeep.api.server import bounded_http_protocol, served_app

    settings = _settings(
        database_url=database_url,
        model=model,
        tools=tools,
        migrate_on_start=False if no_migrate else None,
        allow_unauthenticated=True if allow_unauthenticated else None,
        tune_gc=tune_gc,
    )
    # Tools are imported by path from the current folder too, as uvicorn does for an app ('--app-dir .'): the
    # 'chatkeep' script's own folder, not the current one, is first on sys.path.
    if settings.tools and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    _prepare_database(settings)
    try:
        app = served_app(settings)
    except (ChatkeepError, ValueError) as exc:
        raise click.ClickException(getattr(exc, "message", str(exc))) from exc
    if not app.state.chatkeep.authenticator.enabled and not _is_loopback(host) and not settings.allow_unauthenticated:
        raise click.ClickException(
            f"refusing to serve everyone's chats to anyone on {host}: there is no authentication. Configure it "
            "(CHATKEEP_JWT_SECRET, CHATKEEP_JWKS_URL or CHATKEEP_API_KEYS), listen on 127.0.0.1, or pass "
            "--allow-unauthenticated."
        )
    console.print(
        f"chatkeep on [bold]http://{host}:{port}[/] (API docs at /docs), database "
        f"{display_database_url(settings.database_url)}",
        highlight=False,
        soft_wrap=True,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        proxy_headers=False,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s) + _SHUTDOWN_MARGIN_S,
        http=bounded_http_protocol(settings.max_header_bytes),
    )
    chat: ChatService = app.state.chatkeep.chat

    class Server(uvicorn.Server):
        """uvicorn's server, which on SIGTERM (or Ctrl-C) waits for open connections, here up to the grace and
        the margin; the replies being generated get the grace from the same moment (ChatService.begin_shutdown),
        so each ends in time for its connection to send it (an ``abort`` and ``[DONE]``) before uvicorn cuts it."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            chat.begin_shutdown()
            await super().shutdown(sockets)

    Server(config).run()


def _prepare_database(settings: Settings) -> None:
    """Before serving, open the database once and bring its schema up to date (unless ``--no-migrate``).

    A database that cannot be used fails here, with its reason, instead of in the app's start-up (where uvicorn
    prints a traceback) or on every request. With ``--no-migrate`` the schema is the operator's: an outdated one
    and an unavailable database are a warning (the server answers 503 until it can use it), a misconfigured one
    still stops it. The app migrates again on start (a no-op now): an in-memory SQLite database is its own.
    """
    from chatkeep.errors import DatabaseUnavailable
    from chatkeep.store import make_engine
    from chatkeep.store.migrate import current_revision, head_revision, upgrade

    async def prepare() -> str | None:
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            if settings.migrate_on_start:
                await upgrade(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    try:
        revision = asyncio.run(prepare())
    except DatabaseUnavailable as exc:
        if settings.migrate_on_start:
            raise _failure(exc) from exc
        console.print(f"warning: {exc.detail} Serving anyway (503 until it answers).", markup=False, soft_wrap=True)
        return
    except ChatkeepError as exc:
        raise _failure(exc) from exc
    if revision != head_revision():
        console.print(
            f"warning: the database's schema is at {revision or 'no revision (empty)'}, not {head_revision()}: "
            "run 'chatkeep db upgrade'",
            markup=False,
            soft_wrap=True,
        )


#: After the shutdown grace, how long uvicorn still waits for connections: the interrupted replies are stored
#: and their streams end meanwhile (a write each). Then it closes what is left and the process exits.
_SHUTDOWN_MARGIN_S = 5


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@main.group()
def keys() -> None:
    """Server-to-server API keys."""


@keys.command("new")
def keys_new() -> None:
    """Make an API key. Give the key to the calling service; configure only its hash."""
    from chatkeep.api.auth import new_api_key

    key, digest = new_api_key()
    click.echo(
        f"key:  {key}\nhash: {digest}\n\nAdd the hash to CHATKEEP_API_KEYS (comma-separated); the key is not stored."
    )


@main.group()
def db() -> None:
    """Database schema migrations."""


@db.command("upgrade")
@_database_option
@click.option("--revision", default="head", show_default=True, help="Revision to upgrade to.")
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Bring the schema up to date (safe to run again)."""
    from chatkeep.store import make_engine
    from chatkeep.store.migrate import current_revision, upgrade

    settings = _settings(database_url=database_url)

    async def action() -> str | None:
        engine = make_engine(settings.database_url)
        try:
            await upgrade(engine, revision)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    click.echo(f"database is at revision {_run(action)}")


@db.command("current")
@_database_option
def db_current(database_url: str | None) -> None:
    """Show the revision the database is at, and the newest one; exit with code 3 unless they are the same."""
    from chatkeep.store import make_engine
    from chatkeep.store.migrate import current_revision, head_revision

    settings = _settings(database_url=database_url)

    async def action() -> str | None:
        engine = make_engine(settings.database_url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    current = _run(action)
    head = head_revision()
    state = "up to date" if current == head else "needs 'chatkeep db upgrade'"
    click.echo(f"current: {current or '(empty database)'}\nhead:    {head}\n{state}")
    if current != head:
        sys.exit(SCHEMA_BEHIND_EXIT_CODE)


#: ``chatkeep db current``'s exit code when the schema is not the newest (1 is for errors, 2 for wrong usage).
SCHEMA_BEHIND_EXIT_CODE = 3


# -- data rights: export, import, users delete -------------------------------------------------------------------

_user_option = click.option("--user", "user_id", required=True, metavar="ID", help="The user whose threads these are.")


def _with_transfer(database_url: str | None, action: Callable[[Transfer], Awaitable[T]]) -> T:
    """Run ``action`` on a :class:`Transfer` over its own engine (disposed afterwards)."""
    from chatkeep.store import make_engine
    from chatkeep.store.transfer import Transfer

    settings = _settings(database_url=database_url)

    async def run() -> T:
        engine = make_engine(settings.database_url)
        try:
            return await action(Transfer(engine, limits=settings))
        finally:
            await engine.dispose()

    return _run(run)


class _Progress:
    """Threads done (of how many, when known): a rich bar on stderr when it is a terminal, else silent.

    :meth:`note` prints a line above the bar (or plainly to stderr without one).
    """

    def __init__(self, description: str, total: int | None) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if console.is_terminal:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("threads"),
                TimeElapsedColumn(),
                console=console,
            )
            self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(text, err=True)


@contextmanager
def _output(path: str) -> Iterator[IO[bytes]]:
    """stdout for ``-``; otherwise a file that only appears (or replaces the old one) once writing succeeded."""
    if path == "-":
        with click.open_file("-", "wb") as out:
            yield out
        return
    target = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@main.command("export")
@_user_option
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="File to write the JSON lines to ('-' for stdout).",
)
@_database_option
def export(user_id: str, output: str, database_url: str | None) -> None:
    """Write a user's threads as JSON lines, one thread (with all its messages) per line, oldest first."""

    from chatkeep.store.transfer import encode_record

    async def action(transfer: Transfer) -> int:
        total = (await transfer.count_user(user_id)).threads
        done = 0
        with _output(output) as out, _Progress(f"exporting {user_id}", total) as progress:
            async for record in transfer.export_user(user_id):
                out.write(encode_record(record))
                done += 1
                progress.advance()
        return done

    done = _with_transfer(database_url, action)
    where = "stdout" if output == "-" else output
    click.echo(f"exported {_plural(done, 'thread')} of user {user_id!r} to {where}", err=True)


@main.command("import")
@_user_option
@click.option(
    "--input",
    "-i",
    "input_path",
    default="-",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="File of JSON lines written by 'chatkeep export' ('-' for stdin).",
)
@click.option(
    "--on-conflict",
    type=click.Choice(["skip", "replace", "fail"]),
    default="skip",
    show_default=True,
    help="When the user already has a thread with the same id: keep it, replace it, or stop.",
)
@_database_option
def import_(user_id: str, input_path: str, on_conflict: str, database_url: str | None) -> None:
    """Import threads for a user from JSON lines; each thread is stored whole or not at all.

    Each line is checked as the API checks a request, with the same limits (CHATKEEP_MAX_TEXT_CHARS, …). A line
    that cannot be imported (not valid, not what the API would accept, or a thread id another user has) is
    reported with its number and reason and the rest go on; the command then exits with code 1.
    """
    from chatkeep.store.transfer import OnConflict

    async def action(transfer: Transfer) -> ImportReport:
        await transfer.count_user(user_id)  # a database that cannot be used fails here, before any line is read
        with click.open_file(input_path, "rb") as source:
            total = None
            if input_path != "-":  # a file can be counted first; stdin is read once
                total = sum(1 for line in source if line.strip())
                source.seek(0)
            with _Progress(f"importing {user_id}", total) as progress:

                def on_record(result: RecordResult) -> None:
                    if result.outcome == "refused":
                        progress.note(result.describe())
                    progress.advance()

                return await transfer.import_records(
                    user_id, source, on_conflict=cast(OnConflict, on_conflict), on_record=on_record
                )

    report = _with_transfer(database_url, action)
    imported, replaced = report.count("imported"), report.count("replaced")
    summary = f"imported {_plural(imported + replaced, 'thread')} for user {user_id!r}"
    if replaced:
        summary += f" ({replaced} replaced)"
    if skipped := report.count("skipped"):
        summary += f", skipped {skipped} the user already had"
    click.echo(summary, err=True)
    if refused := len(report.problems):
        raise click.ClickException(f"{_plural(refused, 'record')} not imported (see the lines above)")


@main.group()
def users() -> None:
    """Users' data."""


def _interactive() -> bool:
    return sys.stdin.isatty()


@users.command("delete")
@click.argument("user_id", metavar="ID")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@_database_option
def users_delete(user_id: str, yes: bool, database_url: str | None) -> None:
    """Delete every thread of a user with all its messages, parts and streams. This cannot be undone."""
    counts = _with_transfer(database_url, lambda transfer: transfer.count_user(user_id))
    if counts.threads == 0:
        click.echo(f"user {user_id!r} has no threads; nothing to delete", err=True)
        return
    if not yes:
        if not _interactive():
            raise click.ClickException("refusing to delete without confirmation: pass --yes (stdin is not a terminal)")
        click.confirm(
            f"Delete user {user_id!r}: {_plural(counts.threads, 'thread')} and {_plural(counts.messages, 'message')}?"
            " This cannot be undone.",
            abort=True,
            err=True,
        )
    deleted = _with_transfer(database_url, lambda transfer: transfer.delete_user(user_id))
    click.echo(
        f"deleted {_plural(deleted.threads, 'thread')} and {_plural(deleted.messages, 'message')} of user {user_id!r}",
        err=True,
    )
