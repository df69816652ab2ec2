"""``stackback policy export | apply``: policies as files under version control."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
import yaml

from stackback.cli.context import AppContext
from stackback.cli.output import emit_list
from stackback.cli.policy import pass_app, policy_group
from stackback.errors import InvalidInput
from stackback.services.policy_files import Change, PolicyFiles
from stackback.views import jsonable

F = TypeVar("F", bound=Callable[..., Any])


def _files(app: AppContext) -> PolicyFiles:
    return PolicyFiles(app.policies)


def _read(path: str) -> Any:
    try:
        with click.open_file(path, "r", encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror or error}", field="file") from None
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InvalidInput(f"{path} is not valid YAML{where}", field="file") from None


def _row(change: Change) -> dict[str, Any]:
    return {
        "action": change.action,
        "name": change.name,
        "id": change.policy_id,
        "changes": {
            key: {"from": before, "to": after} for key, (before, after) in change.changes.items()
        },
    }


def _emit(changes: list[Change], fmt: str, *, dry_run: bool) -> None:
    rows = [_row(change) for change in changes]
    if fmt == "table":
        for row in rows:
            row["changes"] = [
                f"{key}: {json.dumps(jsonable(c['from']))} -> {json.dumps(jsonable(c['to']))}"
                for key, c in row["changes"].items()
            ]
    title = "Plan (dry run: nothing changed)" if dry_run else "Applied"
    emit_list(rows, ["action", "name", "changes"], fmt, title=title)


def _format_option(*choices: str) -> Callable[[F], F]:
    """``-f/--format`` with these choices, the first the default."""
    return click.option(
        "-f",
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


@policy_group.command("export")
@click.argument("policies", nargs=-1, metavar="[POLICY]...")
@_format_option("yaml", "json")
@pass_app
def export(app: AppContext, /, policies: tuple[str, ...], fmt: str) -> None:
    """Print every policy (or the named ones) as a file `policy apply` takes back."""
    document = _files(app).export(policies)
    if fmt == "json":
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)


@policy_group.command("apply")
@click.argument("file", metavar="FILE")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option("--prune", is_flag=True, help="Also delete the policies the file does not name.")
@_format_option("table", "json")
@pass_app
def apply(app: AppContext, /, file: str, dry_run: bool, prune: bool, fmt: str) -> None:
    """Create or update policies to match FILE (YAML or JSON; '-' reads stdin).

    Policies are matched by id, then by name. A policy created from the file keeps the
    file's id, so after a database loss `stackback reconcile` links its backups again.
    """
    document = _read(file)
    files = _files(app)
    changes = files.plan(document, prune=prune) if dry_run else files.apply(document, prune=prune)
    _emit(changes, fmt, dry_run=dry_run)


COMMANDS: list[click.Command] = []  # both commands hang off `stackback policy`
