"""The ``stackback`` command line.

Errors are mapped to exit codes here and only here: bad input (usage errors,
``InvalidInput``, unknown names) exits 2 with one line on stderr; other
stackback errors, and the database failing (unreachable, read-only, not a
database), exit 1; anything unexpected is logged with an error id and
exits 1 without a traceback on the terminal.
"""

from __future__ import annotations

import logging
import sys
import traceback
import uuid
from collections.abc import Sequence
from typing import Any

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, DBAPIError, InterfaceError, OperationalError

from stackback import __version__
from stackback.cli import logs
from stackback.cli.context import AppContext
from stackback.config import load_settings, state_dir
from stackback.errors import DatabaseUnavailable, InvalidInput, NotFound, StackbackError

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1

log = logging.getLogger("stackback")


def _is_database_fault(error: DBAPIError) -> bool:
    """Unreachable, read-only or not a database at all; the DBAPI's other errors are bugs."""
    return isinstance(error, OperationalError | InterfaceError) or type(error) is DatabaseError


def _database_unavailable(ctx: click.Context, error: DBAPIError) -> DatabaseUnavailable:
    app: AppContext = ctx.obj  # set by the group before any command reaches the database
    where = make_url(app.settings.db_url).render_as_string(hide_password=True)
    cause = str(error.orig if error.orig is not None else error).strip()
    first_line = cause.splitlines()[0] if cause else type(error).__name__
    return DatabaseUnavailable(f"database {where}: {first_line}")


class _StackbackGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DBAPIError as error:
            if not _is_database_fault(error):
                raise
            raise _database_unavailable(ctx, error) from error


@click.group(cls=_StackbackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stackback")
@click.option(
    "--db",
    metavar="URL",
    envvar="STACKBACK_DB",
    help="Database URL (default: SQLite in the state directory). Env: STACKBACK_DB.",
)
@click.option(
    "--os-cloud",
    "os_cloud",
    metavar="NAME",
    envvar="OS_CLOUD",
    help="clouds.yaml entry to act as, or 'sim' / 'sim:PATH' for the simulator. Env: OS_CLOUD.",
)
@click.option("--cloud", "cloud", metavar="NAME", hidden=True, help="Alias of --os-cloud.")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    envvar="STACKBACK_LOG_FORMAT",
    help="Log lines as text, or one JSON object per line. Env: STACKBACK_LOG_FORMAT.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    db: str | None,
    os_cloud: str | None,
    cloud: str | None,
    verbose: int,
    log_format: str,
) -> None:
    """stackback: scheduled, consistent, rotated and verified backups for OpenStack."""
    logs.configure(logging.WARNING - 10 * min(verbose, 2), log_format)
    app = AppContext(lambda: load_settings(db=db, cloud=cloud or os_cloud), verbose=verbose)
    ctx.obj = app
    ctx.call_on_close(app.close)


def _register() -> None:
    from stackback.cli import (
        alerts,
        api_server,
        backups,
        credentials,
        db,
        demo,
        policy,
        policy_files,
        policy_run,
        reconcile,
        restore,
        retention,
        runs,
        serve,
        server,
        sim,
        status,
        verify,
    )

    modules = (
        db,
        policy,
        policy_files,
        policy_run,
        server,
        retention,
        runs,
        backups,
        restore,
        verify,
        reconcile,
        serve,
        api_server,
        demo,
        sim,
        status,
        alerts,
        credentials,
    )
    for module in modules:
        for command in module.COMMANDS:
            cli.add_command(command)


def _exit_code(error: StackbackError) -> int:
    return EXIT_BAD_INPUT if isinstance(error, InvalidInput | NotFound) else EXIT_FAILURE


def _log_unexpected(error_id: str) -> str:
    """Append the current traceback to the error log; says where it went, for the one line."""
    directory = state_dir() / "logs"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "errors.log"
        with path.open("a") as handle:
            handle.write(f"--- error {error_id}\n{traceback.format_exc()}\n")
        return f"details in {path}"
    except OSError as error:
        return f"details not logged: cannot write {directory} ({error.strerror or error})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``stackback`` console script."""
    try:
        result = cli.main(args=argv, prog_name="stackback", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.exceptions.Abort:
        click.echo("stackback: aborted", err=True)
        return 130
    except click.ClickException as error:
        click.echo(f"stackback: error: {error.format_message()}", err=True)
        return error.exit_code
    except StackbackError as error:
        suffix = "" if _exit_code(error) == EXIT_BAD_INPUT else f" (error id {error.error_id})"
        if isinstance(error, DatabaseUnavailable):  # sqlite3 reports some bugs this way too
            suffix = f" (error id {error.error_id}; {_log_unexpected(error.error_id)})"
        click.echo(f"stackback: error: {error.message}{suffix}", err=True)
        return _exit_code(error)
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the edge: never a traceback on the terminal
        error_id = uuid.uuid4().hex[:12]
        where = _log_unexpected(error_id)
        click.echo(
            f"stackback: internal error {type(error).__name__}: {error} "
            f"(error id {error_id}; {where})",
            err=True,
        )
        return EXIT_FAILURE
    return result if isinstance(result, int) else 0


_register()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
