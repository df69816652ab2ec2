"""Run a policy now: one on-demand run per target, recorded under the policy."""

from __future__ import annotations

from stackback.errors import Conflict
from stackback.policy import Policy, Run
from stackback.ports import Clock, CloudResolver, Store


class PolicyRunner:
    """Starts a policy's backups now, outside its schedule (its retention still applies)."""

    def __init__(self, store: Store, clouds: CloudResolver, clock: Clock) -> None:
        self.store = store
        self.clouds = clouds
        self.clock = clock

    def targets(self, policy: Policy) -> list[str]:
        """The servers the policy backs up now: those it names, or those its selector finds
        (by id, as a scheduled run records them)."""
        if policy.selector is None:
            return list(policy.targets)
        servers = self.clouds(policy.cloud).find_servers(policy.selector)
        return [server.id for server in sorted(servers, key=lambda s: s.id)]

    def run_now(self, ref: str) -> list[Run]:
        """One pending run per target, due now; a worker takes them as any other run.

        The runs carry the policy (its label, cloud, and retention at rotation time);
        ``Conflict`` when the policy has no server to back up.
        """
        policy = self.store.get_policy(ref)
        targets = self.targets(policy)
        if not targets:
            what = f"selector {policy.selector}" if policy.selector else "its server list"
            raise Conflict(f"policy {policy.name!r} has no server to back up now ({what})")
        now = self.clock.now()
        return [
            self.store.create_manual_run(
                target=target,
                now=now,
                label=policy.label,
                retention=None,
                cloud=policy.cloud,
                policy=policy,
            )
            for target in targets
        ]
