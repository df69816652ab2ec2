"""``stackback credential list | revoke``: the trusts and application credentials policies
created through the API or the dashboard act through, and what still needs each."""

from __future__ import annotations

from typing import Any

import click

from stackback.cli.context import AppContext
from stackback.cli.output import emit_list, emit_object, format_option, minute
from stackback.cli.policy import pass_app
from stackback.config import policy_credentials
from stackback.records import CredentialState
from stackback.views import credential_view

LIST_COLUMNS = ["id", "kind", "project", "status", "policies", "backups", "runs", "restores"]


@click.group("credential")
def credential_group() -> None:
    """Stored credentials (keystone mode): what acts through each, and revoking them."""


@credential_group.command("list")
@format_option
@pass_app
def list_credentials(app: AppContext, /, fmt: str) -> None:
    """Every stored credential: kind, project, status (active: a policy acts through it;
    retired: only backups, runs or restores made through it need it; revoked) and what
    uses it. No secret is ever shown."""
    rows = [credential_view(c, usage) for c, usage in app.credential_store.list_credentials()]
    if fmt == "table":
        rows = [_table_row(row) for row in rows]
    emit_list(rows, LIST_COLUMNS, fmt, title="Credentials", whole=("id", "project", "status"))


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    when = row["revoked_at"] or row["retired_at"]
    status = f"{row['status']} {minute(when)}" if when else row["status"]
    return {**row, "status": status, "policies": ", ".join(row["policies"])}


@credential_group.command("revoke")
@click.argument("credential_id", metavar="ID")
@click.option(
    "--force",
    is_flag=True,
    help="Revoke it even while backups, runs or restores made through it need it (they can "
    "then no longer be rotated, deleted or restored by stackback).",
)
@format_option
@pass_app
def revoke(app: AppContext, /, credential_id: str, force: bool, fmt: str) -> None:
    """Revoke a credential no policy uses: delete its trust in Keystone (an application
    credential's sealed secret is erased). Refused while backups made through it remain,
    unless --force; exit 1 if Keystone could not delete the trust (recorded)."""
    credentials = policy_credentials(app.settings, app.credential_store, app.clock)
    revoked, unmanageable = credentials.revoke(credential_id, force=force)
    if unmanageable != "nothing":
        click.echo(
            f"stackback: warning: revoked while needed: {unmanageable} can no longer be "
            "rotated, deleted or restored by stackback (their cloud objects stay)",
            err=True,
        )
    usage = app.credential_store.credential_usage(revoked.id)
    emit_object({**credential_view(revoked, usage), "left_unmanageable": unmanageable}, fmt)
    if revoked.state is CredentialState.REVOKE_FAILED:
        click.get_current_context().exit(1)


COMMANDS = [credential_group]
