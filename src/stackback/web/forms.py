"""The policy form: its fields (those of ``stackback policy create``), read into a
:class:`PolicySpec`, and filled in from a policy to edit it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from stackback.consistency import ConsistencyLevel, Fallback
from stackback.errors import InvalidInput
from stackback.policy import IMPLEMENTED_KINDS, BackupKind, Policy
from stackback.retention import COUNT_RULES, WITHIN_RULES, RetentionPolicy
from stackback.services.policies import PolicySpec

KEEP_COUNTS = tuple(f"keep_{rule}" for rule in COUNT_RULES)
KEEP_DURATIONS = tuple(f"keep_{rule}" for rule in ("within", *WITHIN_RULES))
TEXT_FIELDS = (
    "name",
    "servers",
    "selector",
    "crons",
    "timezone",
    "window",
    "kind",
    "label",
    "consistency",
    "fallback",
    "max_pause",
    "verify_cron",
    "verify_flavor",
    "verify_network",
    "verify_pick",
    "orphans",
    "cloud",
    *KEEP_COUNTS,
    *KEEP_DURATIONS,
)
FLAGS = ("keep_all", "offline", "disabled")
KINDS = tuple(kind.value for kind in BackupKind if kind in IMPLEMENTED_KINDS)
"""In a fixed order (not a set's, which changes per process): the first is the default."""
CONSISTENCY_LEVELS = tuple(level.value for level in ConsistencyLevel)
FALLBACKS = tuple(fallback.value for fallback in Fallback)

FormValues = dict[str, str]
"""What the form shows in its fields (checkboxes: "on" or "")."""


@dataclass(frozen=True)
class PolicyForm:
    """A submitted policy form: its values (to show again) and the spec they ask for."""

    values: FormValues
    offline: bool

    def spec(self, *, create: bool) -> PolicySpec:
        """The policy the form asks for; every field is given (an edit replaces them all).

        ``InvalidInput`` (naming the field) for a value that cannot be one."""
        v = self.values
        servers = _items(v["servers"])
        selector = v["selector"].strip()
        if servers and selector:
            raise InvalidInput("give either servers or a selector, not both", field="servers")
        crons = tuple(line.strip() for line in v["crons"].splitlines() if line.strip())
        if not crons:
            raise InvalidInput("a policy needs at least one cron schedule", field="crons")
        return PolicySpec(
            name=v["name"],
            targets=tuple(servers) if servers or not selector else None,
            selector=selector or None,
            kind=v["kind"] or None,
            schedules=crons,
            timezone=v["timezone"].strip() or "UTC",
            window_minutes=_number(v["window"], "window") or 0,
            retention=retention_of(v),
            enabled=not v["disabled"] if create else None,
            cloud=(v["cloud"].strip() or None) if create else None,
            label=v["label"].strip(),
            keep_all=bool(v["keep_all"]),
            consistency=v["consistency"] or None,
            fallback=v["fallback"] or None,
            max_pause_seconds=_number(v["max_pause"], "max_pause"),
            verify_cron=v["verify_cron"].strip(),
            verify_flavor=v["verify_flavor"].strip(),
            verify_network=v["verify_network"].strip(),
            verify_pick=v["verify_pick"].strip(),
            orphans=v["orphans"].strip() or None,
        )


def read_form(data: Mapping[str, object]) -> PolicyForm:
    """The policy form as posted (missing fields are empty)."""
    values: FormValues = {}
    for name in TEXT_FIELDS:
        raw = data.get(name)
        values[name] = raw if isinstance(raw, str) else ""
    for flag in FLAGS:
        values[flag] = "on" if data.get(flag) else ""
    return PolicyForm(values, offline=bool(values["offline"]))


def blank_form(default_cloud: str | None) -> FormValues:
    """A new policy's form, with the defaults ``policy create`` has."""
    values = {name: "" for name in (*TEXT_FIELDS, *FLAGS)}
    values.update(
        timezone="UTC",
        window="0",
        kind=KINDS[0],
        consistency=ConsistencyLevel.CRASH.value,
        fallback=Fallback.CRASH.value,
        max_pause="60",
        orphans="keep",
        cloud=default_cloud or "",
    )
    return values


def form_of(policy: Policy) -> FormValues:
    """A policy's values in the form (to edit it)."""
    values = {name: "" for name in (*TEXT_FIELDS, *FLAGS)}
    verify = policy.verify
    values.update(
        name=policy.name,
        servers="\n".join(policy.targets),
        selector=str(policy.selector) if policy.selector else "",
        crons="\n".join(policy.schedules),
        timezone=policy.timezone,
        window=str(policy.window_minutes),
        kind=policy.kind.value,
        label=policy.label or "",
        consistency=policy.consistency.value,
        fallback=policy.fallback.value,
        max_pause=str(policy.max_pause_seconds),
        verify_cron=verify.cron if verify else "",
        verify_flavor=(verify.flavor or "") if verify else "",
        verify_network=(verify.network or "") if verify else "",
        verify_pick=verify.pick if verify else "",
        orphans=str(policy.orphans),
        cloud=policy.cloud or "",
        keep_all="on" if policy.retention.is_empty() else "",
        disabled="" if policy.enabled else "on",
    )
    for rule, value in policy.retention.to_dict().items():
        values[f"keep_{rule}"] = str(value)
    return values


def retention_of(values: Mapping[str, str]) -> RetentionPolicy:
    """The keep rules filled in (an empty field or 0: no such rule)."""
    rules: dict[str, object] = {}
    for name in KEEP_COUNTS:
        count = _number(values[name], name)
        if count:
            rules[name.removeprefix("keep_")] = count
    for name in KEEP_DURATIONS:
        text = values[name].strip()
        if text and text != "0":
            rules[name.removeprefix("keep_")] = text
    return RetentionPolicy.from_dict(rules)


def _items(text: str) -> list[str]:
    """Server names or ids, one per line or separated by commas."""
    return [item.strip() for item in re.split(r"[\n,]", text) if item.strip()]


def _number(text: str, name: str) -> int | None:
    """A whole number >= 0 from a field (None when it is empty)."""
    text = text.strip()
    if not text:
        return None
    label = name.replace("_", "-")
    if not (text.isascii() and text.isdigit()):
        raise InvalidInput(f"{label} must be a whole number >= 0, not {text!r}", field=name)
    if len(text) > 9:
        raise InvalidInput(f"{label} is too large: {text}", field=name)
    return int(text)
