"""Every service call the dashboard makes, for one principal, authorized in one place.

Each method asks the :class:`~stackback.services.access.Authorizer` first (a listing for
the principal's own project, a record for the project that owns it), then calls the
service. Every list and show is scoped to the principal's project exactly as the API's:
a record of another project is not found (404, never 403); whoever may act on every
project (``stackback:all_projects``, e.g. an admin) sees every project's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from stackback.errors import Forbidden, NotFound
from stackback.policy import Backup, Policy, Run, RunState
from stackback.ports import Clock, CloudResolver, Store
from stackback.restoreplan import RestoreJob, RestoreMode, RestoreOverrides, RestoreState
from stackback.services.access import Action, Authorizer, Principal, acts_as_its_project
from stackback.services.backups import BackupService, PreviewRow
from stackback.services.container import NewCredential
from stackback.services.policies import PolicyService, PolicySpec, PolicyView
from stackback.services.restores import DEFAULT_TIMEOUT, PlannedRestore, RestoreService
from stackback.services.runs import RunService
from stackback.services.servers import ServerDirectory
from stackback.services.status import StatusService, TargetReport

RECENT_RUNS = 100
"""Runs a page lists (newest first)."""


@dataclass(frozen=True)
class Backends:
    """What the services are built on: the store (a port), the clouds and the clock."""

    store: Store
    clouds: CloudResolver
    clock: Clock
    new_credential: NewCredential | None = None
    """keystone mode: the trust a policy created in the dashboard acts through."""
    release_credential: Callable[[str | None], object] | None = None
    default_cloud: str | None = None


class Gateway:
    """The dashboard's one way to the services, on behalf of ``principal``."""

    def __init__(self, backends: Backends, authorizer: Authorizer, principal: Principal) -> None:
        self.backends = backends
        self.authorizer = authorizer
        self.principal = principal

    # -- authorization ------------------------------------------------------------------

    def allow(self, action: Action, project_id: str | None = None) -> None:
        """Raise ``Forbidden`` unless the principal may take ``action`` on ``project_id``."""
        self.authorizer.authorize(self.principal, action, project_id)

    def may(self, action: Action, project_id: str | None = None) -> bool:
        """Whether the principal may take ``action`` (pages show only what it may do)."""
        try:
            self.allow(action, project_id)
        except Forbidden:
            return False
        return True

    @property
    def scope(self) -> str | None:
        """The project whose records the principal sees (None: every project)."""
        if self.may(Action.ALL_PROJECTS):
            return None
        if self.principal.project_id is None:
            raise Forbidden("a token scoped to a project is needed to see its records")
        return self.principal.project_id

    def visible(self, project: str | None, what: str, ref: str) -> None:
        """Raise ``NotFound`` for a record of a project outside the principal's scope."""
        scope = self.scope
        if scope is not None and project != scope:
            raise NotFound(f"no {what} {ref!r}")

    def check(self, action: Action, project: str | None, what: str, ref: str) -> None:
        """Not found outside the scope, then ``Forbidden`` unless the rules allow it."""
        self.visible(project, what, ref)
        self.allow(action, project)

    # -- services ---------------------------------------------------------------------------

    @property
    def _policies(self) -> PolicyService:
        b = self.backends
        return PolicyService(
            b.store, b.clock, ServerDirectory(b.clouds), release_credential=b.release_credential
        )

    @property
    def _runs(self) -> RunService:
        b = self.backends
        return RunService(b.store, b.clouds, b.clock)

    @property
    def _backups(self) -> BackupService:
        b = self.backends
        return BackupService(b.store, b.clouds, b.clock, release_credential=b.release_credential)

    @property
    def _restores(self) -> RestoreService:
        b = self.backends
        return RestoreService(b.store, b.clouds, b.clock)

    # -- policies -------------------------------------------------------------------------

    def policy_views(self) -> list[PolicyView]:
        self.allow(Action.POLICY_LIST)
        return self._policies.views(project=self.scope)

    def policy_view(self, ref: str) -> PolicyView:
        view = self._policies.view(ref, project=self.scope)
        self.check(Action.POLICY_SHOW, view.policy.project, "policy", ref)
        return view

    def policy_for_update(self, ref: str) -> Policy:
        policy = self._policies.get(ref, project=self.scope)
        self.check(Action.POLICY_UPDATE, policy.project, "policy", ref)
        return policy

    def allow_create_policy(self) -> None:
        self.allow(Action.POLICY_CREATE, self.principal.project_id)

    def create_policy(self, spec: PolicySpec, *, offline: bool = False) -> Policy:
        """The policy belongs to the principal's project (as the API's); in keystone mode it
        acts later through a trust from the principal."""
        self.allow_create_policy()
        spec = replace(spec, project=self.principal.project_id)
        new_credential = self.backends.new_credential
        if new_credential is None or spec.cloud not in (None, self.backends.default_cloud):
            return self._policies.create(spec, offline=offline)
        credential = new_credential(self.principal, None, None)
        try:
            return self._policies.create(replace(spec, cloud=credential), offline=offline)
        except Exception:
            if self.backends.release_credential is not None:
                self.backends.release_credential(credential)
            raise

    def update_policy(self, ref: str, spec: PolicySpec, *, offline: bool = False) -> Policy:
        current = self.policy_for_update(ref)
        return self._policies.update(current.id, spec, offline=offline)

    def set_enabled(self, ref: str, enabled: bool) -> Policy:
        current = self.policy_for_update(ref)
        return self._policies.set_enabled(current.id, enabled)

    def delete_policy(self, ref: str) -> Policy:
        """As ``policy delete`` and ``DELETE /v1/policies/{id}``: its backups and runs stay."""
        policy = self._policies.get(ref, project=self.scope)
        self.check(Action.POLICY_DELETE, policy.project, "policy", ref)
        (deleted,) = self._policies.delete([policy.id])
        return deleted

    def allow_delete_policy(self, ref: str) -> PolicyView:
        view = self._policies.view(ref, project=self.scope)
        self.check(Action.POLICY_DELETE, view.policy.project, "policy", ref)
        return view

    def retention_preview(self, ref: str) -> tuple[PolicyView, list[PreviewRow]]:
        """What the policy would keep and forget now, and why (deletes nothing)."""
        view = self.policy_view(ref)
        return view, self._backups.preview(view.policy.id)

    def run_now(self, ref: str) -> list[Run]:
        policy = self._policies.get(ref, project=self.scope)
        self.check(Action.POLICY_RUN, policy.project, "policy", ref)
        return self._policies.run_now(policy.id)

    # -- runs -------------------------------------------------------------------------------

    def runs(
        self, *, policy: str | None = None, state: RunState | None = None, limit: int = RECENT_RUNS
    ) -> list[Run]:
        self.allow(Action.RUN_LIST)
        return self._runs.list_runs(policy=policy, state=state, limit=limit, project=self.scope)

    def run(self, ref: str) -> Run:
        run = self._runs.get(ref, project=self.scope)
        self.check(Action.RUN_SHOW, run.project, "run", ref)
        return run

    # -- backups ----------------------------------------------------------------------------

    def backups(self, *, server: str | None = None, policy: str | None = None) -> list[Backup]:
        self.allow(Action.BACKUP_LIST)
        return self._backups.list_backups(server=server, policy=policy, project=self.scope)

    def backup(self, ref: str) -> Backup:
        backup = self._backups.get(ref, project=self.scope)
        self.check(Action.BACKUP_SHOW, backup.project, "backup", ref)
        return backup

    def backup_chain(self, backup: Backup) -> tuple[list[str], list[str]] | None:
        """A backup's chain as ``backup show`` and the API show it (within the scope)."""
        return self._backups.chain(backup, project=self.scope)

    def protect(self, ref: str, protected: bool) -> Backup:
        backup = self._backups.get(ref, project=self.scope)
        self.check(Action.BACKUP_PROTECT, backup.project, "backup", ref)
        return self._backups.protect(backup.id, protected)

    def delete_backup(self, ref: str) -> Backup:
        backup = self._acted_on(Action.BACKUP_DELETE, ref)
        return self._backups.delete(backup.id)

    def allow_restore(self, ref: str) -> Backup:
        return self._acted_on(Action.BACKUP_RESTORE, ref)

    def _acted_on(self, action: Action, ref: str) -> Backup:
        """A backup acted on through its cloud: another cloud than the project's own is
        for every-project principals only (as the API's ``acted_on_backup``)."""
        backup = self._backups.get(ref, project=self.scope)
        self.check(action, backup.project, "backup", ref)
        if not acts_as_its_project(backup.cloud, self.backends.default_cloud):
            self.allow(Action.ALL_PROJECTS)
        return backup

    def restore_plan(
        self, ref: str, *, name: str | None, flavor: str | None, network: str | None
    ) -> PlannedRestore:
        """What restoring the backup as a new server would create (nothing is created)."""
        backup = self.allow_restore(ref)
        overrides = RestoreOverrides(name=name, flavor=flavor, network=network)
        return self._restores.plan(backup.id, mode=RestoreMode.AS_NEW, overrides=overrides)

    def restore_as_new(
        self,
        ref: str,
        *,
        name: str | None,
        flavor: str | None,
        network: str | None,
        timeout: timedelta = DEFAULT_TIMEOUT,
    ) -> RestoreJob:
        backup = self.allow_restore(ref)
        overrides = RestoreOverrides(name=name, flavor=flavor, network=network)
        return self._restores.start(
            backup.id, mode=RestoreMode.AS_NEW, overrides=overrides, timeout=timeout
        )

    def restores(
        self, *, state: RestoreState | None = None, limit: int = RECENT_RUNS
    ) -> list[RestoreJob]:
        """Restore jobs (and verifications), newest first, of the principal's project."""
        self.allow(Action.RESTORE_LIST)
        return self._restores.list(state=state, limit=limit, project=self.scope)

    def restore_job(self, ref: str) -> RestoreJob:
        job = self._restores.get(ref, project=self.scope)
        self.check(Action.RESTORE_SHOW, job.project, "restore", ref)
        return job

    # -- status -----------------------------------------------------------------------------

    def status(self) -> list[TargetReport]:
        self.allow(Action.STATUS_SHOW)
        b = self.backends
        return StatusService(b.store, b.clock).report(project=self.scope)
