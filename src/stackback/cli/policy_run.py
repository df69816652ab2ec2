"""``stackback policy run POLICY``: a policy's backups now, outside its schedule."""

from __future__ import annotations

import click

from stackback.cli.backups import LONGEST_WAIT_SECONDS, WAIT_TIMEOUT_SECONDS, progress_line
from stackback.cli.context import AppContext
from stackback.cli.output import console, emit_list, format_option
from stackback.cli.policy import pass_app, policy_group
from stackback.errors import InvalidInput
from stackback.policy import Run, RunState
from stackback.views import run_summary

RUN_COLUMNS = ["id", "target", "state", "scheduled_for", "error"]


@policy_group.command("run")
@click.argument("policy")
@click.option("--wait", is_flag=True, help="Take the backups in this process and wait for them.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, LONGEST_WAIT_SECONDS, min_open=True),
    metavar="S",
    help=f"With --wait: stop waiting for each run after S seconds (default "
    f"{WAIT_TIMEOUT_SECONDS:.0f}); exits 1, the runs go on.",
)
@format_option
@pass_app
def run_policy(
    app: AppContext, /, policy: str, wait: bool, timeout: float | None, fmt: str
) -> None:
    """Back up every target of POLICY now: one on-demand run per target (a selector is
    resolved now), recorded under the policy so that its retention rotates them.

    Without --wait the runs are queued for the workers of `serve`; with --wait this
    process takes them one after the other and exits 1 if any of them failed.
    """
    if timeout is not None and not wait:
        raise InvalidInput("--timeout applies only with --wait", field="timeout")
    runs = app.policies.run_now(policy)
    if wait:
        runs = [_waited(app, run, timeout) for run in runs]
    emit_list([run_summary(run) for run in runs], RUN_COLUMNS, fmt)
    failed = [run for run in runs if wait and run.state is not RunState.SUCCEEDED]
    for run in failed:
        click.echo(
            f"stackback: error: backup of {run.target_name or run.target} {run.state.value}: "
            f"{run.error or 'no detail'} (run {run.id})",
            err=True,
        )
    if failed:
        click.get_current_context().exit(1)


def _waited(app: AppContext, run: Run, timeout: float | None) -> Run:
    with console(stderr=True).status(progress_line(run)) as status:
        return app.runs.wait(
            run.id,
            timeout=WAIT_TIMEOUT_SECONDS if timeout is None else timeout,
            progress=lambda seen: status.update(progress_line(seen)),
        )


COMMANDS: list[click.Command] = []  # hangs off `stackback policy`
