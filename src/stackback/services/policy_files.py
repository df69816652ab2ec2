"""Policies as files: export them, and apply a file (create, update, optionally prune).

A policy file keeps policies in version control and brings them back after a database
loss: each entry carries the policy's id, so a re-applied policy gets its old id and
``reconcile`` links the backups in the cloud (whose markers name that id) to it again.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackback.consistency import DEFAULT_MAX_PAUSE_SECONDS
from stackback.errors import InvalidInput, NotFound
from stackback.policy import VOLUME_KINDS, Policy
from stackback.retention import RetentionPolicy
from stackback.services.policies import PolicyService, PolicySpec
from stackback.verification import PICK_NEWEST

FORMAT_VERSION = 1
FIELDS = (
    "name",
    "kind",
    "cloud",
    "targets",
    "selector",
    "schedules",
    "timezone",
    "window_minutes",
    "retention",
    "enabled",
    "label",
    "keep_all",
    "consistency",
    "fallback",
    "max_pause_seconds",
    "verify",
    "orphans",
    "full_every",
    "full_cron",
)
"""What a file says of a policy, besides its id; the order a file lists them in."""

REQUIRED = ("name", "schedules")
VERIFY_FIELDS = ("cron", "flavor", "network", "pick")


def policy_entry(policy: Policy) -> dict[str, Any]:
    """One policy as a file entry: plain values only (YAML- and JSON-safe)."""
    return {
        "id": policy.id,
        "name": policy.name,
        "kind": policy.kind.value,
        "cloud": policy.cloud,
        "targets": list(policy.targets),
        "selector": str(policy.selector) if policy.selector else None,
        "schedules": list(policy.schedules),
        "timezone": policy.timezone,
        "window_minutes": policy.window_minutes,
        "retention": dict(policy.retention.to_dict()),
        "enabled": policy.enabled,
        "label": policy.label,
        "keep_all": policy.retention.is_empty(),
        "consistency": policy.consistency.value,
        "fallback": policy.fallback.value,
        "max_pause_seconds": policy.max_pause_seconds,
        "verify": {
            "cron": policy.verify.cron,
            "flavor": policy.verify.flavor,
            "network": policy.verify.network,
            "pick": policy.verify.pick,
        }
        if policy.verify
        else None,
        "orphans": str(policy.orphans),
        "full_every": policy.full_every,
        "full_cron": policy.full_cron,
    }


def export_document(policies: Sequence[Policy]) -> dict[str, Any]:
    """The file for ``policies``, sorted by name so that exports diff well."""
    return {
        "version": FORMAT_VERSION,
        "policies": [policy_entry(p) for p in sorted(policies, key=lambda p: p.name)],
    }


@dataclass(frozen=True)
class Change:
    """What applying one entry (or pruning one policy) does."""

    action: str  # "create", "update", "unchanged", "delete"
    name: str
    policy_id: str | None
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    """field -> (current value, value in the file), for updates."""


def _entries(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, Mapping):
        raise InvalidInput("a policy file is a mapping with a 'policies' list", field="file")
    version = document.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise InvalidInput(
            f"policy file version {version!r} is not supported (expected {FORMAT_VERSION})",
            field="file",
        )
    unknown = sorted(set(document) - {"version", "policies"})
    if unknown:
        raise InvalidInput(f"unknown key(s) in the policy file: {', '.join(unknown)}", field="file")
    entries = document.get("policies")
    if not isinstance(entries, list):
        raise InvalidInput("a policy file needs a 'policies' list", field="file")
    checked: list[dict[str, Any]] = []
    names: set[str] = set()
    ids: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        where = f"policies[{number}]"
        if not isinstance(entry, Mapping):
            raise InvalidInput(f"{where} is not a mapping", field="file")
        unknown = sorted(set(entry) - {"id", *FIELDS})
        if unknown:
            raise InvalidInput(
                f"{where}: unknown key(s) {', '.join(map(str, unknown))}", field="file"
            )
        missing = [key for key in REQUIRED if entry.get(key) in (None, "", [])]
        if missing:
            raise InvalidInput(f"{where}: {', '.join(missing)} missing", field="file")
        name = str(entry["name"])
        if name in names:
            raise InvalidInput(f"{where}: policy {name!r} appears twice", field="file")
        names.add(name)
        policy_id = entry.get("id")
        if policy_id is not None:
            try:
                policy_id = str(uuid.UUID(str(policy_id)))
            except ValueError:
                raise InvalidInput(
                    f"{where}: id {policy_id!r} is not a UUID", field="file"
                ) from None
            if policy_id in ids:
                raise InvalidInput(f"{where}: id {policy_id} appears twice", field="file")
            ids.add(policy_id)
        checked.append({**entry, "id": policy_id, "name": name})
    return checked


def _list(value: Any, where: str, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list):
        raise InvalidInput(f"{where}: {key} must be a list", field="file")
    return tuple(str(item) for item in value)


def _spec(entry: Mapping[str, Any]) -> PolicySpec:
    where = f"policy {entry['name']!r}"
    retention = entry.get("retention") or {}
    if not isinstance(retention, Mapping):
        raise InvalidInput(f"{where}: retention must be a mapping of rules", field="file")
    keep_all = entry.get("keep_all", False)
    if not isinstance(keep_all, bool):
        raise InvalidInput(f"{where}: keep_all must be true or false", field="file")
    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput(f"{where}: enabled must be true or false", field="file")
    window = entry.get("window_minutes", 0)
    if isinstance(window, bool) or not isinstance(window, int):
        raise InvalidInput(f"{where}: window_minutes must be a whole number", field="file")
    max_pause = entry.get("max_pause_seconds", DEFAULT_MAX_PAUSE_SECONDS)
    if isinstance(max_pause, bool) or not isinstance(max_pause, int):
        raise InvalidInput(f"{where}: max_pause_seconds must be a whole number", field="file")
    targets = _list(entry.get("targets"), where, "targets")
    selector = entry.get("selector")
    if targets and selector:
        raise InvalidInput(f"{where}: give targets or a selector, not both", field="file")
    verify = entry.get("verify") or {}
    if not isinstance(verify, Mapping) or (verify and not verify.get("cron")):
        raise InvalidInput(
            f"{where}: verify must be a mapping with a cron (and flavor, network, pick)",
            field="file",
        )
    unknown = sorted(set(verify) - set(VERIFY_FIELDS))
    if unknown:
        raise InvalidInput(
            f"{where}: unknown verify key(s) {', '.join(map(str, unknown))}", field="file"
        )
    kind = str(entry.get("kind") or "server-image")
    full_every = _whole(entry.get("full_every") or 0, where, "full_every")
    of_volumes = kind in {k.value for k in VOLUME_KINDS}  # a file's targets are the kind's
    return PolicySpec(
        id=entry.get("id"),
        name=entry["name"],
        targets=None if of_volumes else targets,
        selector=None if of_volumes else (str(selector) if selector else None),
        volumes=(targets or None) if of_volumes else None,
        volume_selector=(str(selector) if selector else None) if of_volumes else None,
        full_every=full_every,
        full_cron=str(entry.get("full_cron") or ""),  # none in the file: no full cron
        kind=kind,
        schedules=_list(entry.get("schedules"), where, "schedules"),
        timezone=str(entry.get("timezone") or "UTC"),
        window_minutes=window,
        retention=RetentionPolicy.from_dict(dict(retention)),
        keep_all=keep_all,
        enabled=enabled,
        cloud=str(entry.get("cloud") or ""),  # "" clears what the file no longer says
        label=str(entry.get("label") or ""),
        consistency=str(entry.get("consistency") or "crash"),
        fallback=str(entry.get("fallback") or "crash"),
        max_pause_seconds=max_pause,
        verify_cron=str(verify.get("cron") or ""),  # none in the file: no verify schedule
        verify_flavor=str(verify.get("flavor") or ""),
        verify_network=str(verify.get("network") or ""),
        verify_pick=str(verify.get("pick") or PICK_NEWEST) if verify else None,
        orphans=str(entry.get("orphans") or "keep"),
    )


def _whole(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{where}: {key} must be a whole number", field="file")
    return value


def _comparable(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {key: entry.get(key) for key in FIELDS}


class PolicyFiles:
    """Export policies to a document, and plan or apply a document."""

    def __init__(self, policies: PolicyService) -> None:
        self.policies = policies

    def export(self, refs: Sequence[str] = ()) -> dict[str, Any]:
        chosen = [self.policies.get(ref) for ref in refs] if refs else self.policies.list_policies()
        return export_document(chosen)

    def plan(self, document: Any, *, prune: bool = False) -> list[Change]:
        """What :meth:`apply` would do; every entry is validated first (all or nothing)."""
        current = self.policies.list_policies()
        by_id = {p.id: p for p in current}
        by_name = {p.name: p for p in current}
        plan: list[Change] = []
        kept: set[str] = set()
        for entry in _entries(document):
            spec = _spec(entry)
            existing = by_id.get(entry["id"]) if entry["id"] else None
            existing = existing or by_name.get(entry["name"])
            wanted = _comparable(policy_entry(self.policies.preview(spec, existing)))
            if existing is None:
                plan.append(Change("create", entry["name"], entry["id"]))
                continue
            kept.add(existing.id)
            before = _comparable(policy_entry(existing))
            changes = {k: (before[k], wanted[k]) for k in FIELDS if before[k] != wanted[k]}
            action = "update" if changes else "unchanged"
            plan.append(Change(action, entry["name"], existing.id, changes))
        if prune:
            plan.extend(Change("delete", p.name, p.id) for p in current if p.id not in kept)
        return plan

    def apply(self, document: Any, *, prune: bool = False) -> list[Change]:
        """Make the database match the document; returns what was done."""
        plan = self.plan(document, prune=prune)
        specs = {entry["name"]: _spec(entry) for entry in _entries(document)}
        for change in plan:
            if change.action == "create":
                self.policies.create(specs[change.name])
            elif change.action == "update":
                assert change.policy_id is not None
                self.policies.update(change.policy_id, _without_id(specs[change.name]))
            elif change.action == "delete":
                assert change.policy_id is not None
                with contextlib.suppress(NotFound):  # deleted meanwhile: the file's wish holds
                    self.policies.delete([change.policy_id])
        return plan


def _without_id(spec: PolicySpec) -> PolicySpec:
    return PolicySpec(**{**spec.__dict__, "id": None})
