"""Authorization with oslo.policy: rule defaults in code for every ``Action``, an operator's
policy file (YAML) over them.

Personas: ``reader`` reads its own project's resources, ``member`` also changes them,
``admin`` acts on every project (and may list them all: ``stackback:all_projects``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from stackback.errors import Forbidden, InvalidInput
from stackback.services.access import Action, Principal

ADMIN = "role:admin"
PROJECT_READER = "(role:reader or role:member or role:admin) and project_id:%(project_id)s"
PROJECT_MEMBER = "(role:member or role:admin) and project_id:%(project_id)s"

READ_ACTIONS = frozenset(
    {
        Action.POLICY_LIST,
        Action.POLICY_SHOW,
        Action.RUN_LIST,
        Action.RUN_SHOW,
        Action.BACKUP_LIST,
        Action.BACKUP_SHOW,
        Action.RESTORE_LIST,
        Action.RESTORE_SHOW,
        Action.STATUS_SHOW,
    }
)


def default_rules() -> list[oslo_policy.RuleDefault]:
    """The rule of every action, as the operator's policy file may override it."""
    rules = [
        oslo_policy.RuleDefault("admin_required", ADMIN, "Any project, any action."),
        oslo_policy.RuleDefault(
            "project_reader", PROJECT_READER, "A reader (or more) of the resource's project."
        ),
        oslo_policy.RuleDefault(
            "project_member", PROJECT_MEMBER, "A member (or admin) of the resource's project."
        ),
    ]
    for action in Action:
        if action is Action.ALL_PROJECTS:
            check = "rule:admin_required"
        elif action in READ_ACTIONS:
            check = "rule:admin_required or rule:project_reader"
        else:
            check = "rule:admin_required or rule:project_member"
        rules.append(oslo_policy.RuleDefault(action.value, check, f"May {action.name.lower()}."))
    return rules


class PolicyAuthorizer:
    """An ``Authorizer`` deciding with oslo.policy (defaults in code, ``policy_file`` over them)."""

    def __init__(self, policy_file: Path | None = None) -> None:
        if policy_file is not None and not policy_file.is_file():
            raise InvalidInput(f"policy file {policy_file} does not exist", field="policy_file")
        conf = cfg.ConfigOpts()
        conf(args=[], project="stackback", default_config_files=[], default_config_dirs=[])
        self._enforcer = oslo_policy.Enforcer(conf, use_conf=False)
        defaults = default_rules()
        self._enforcer.register_defaults(defaults)
        rules = oslo_policy.Rules({rule.name: rule.check for rule in defaults})
        if policy_file is not None:  # the operator's rules replace the defaults they name
            try:
                rules.update(oslo_policy.Rules.load(policy_file.read_text()))
            except ValueError as error:
                raise InvalidInput(
                    f"policy file {policy_file}: {error}", field="policy_file"
                ) from error
        self._enforcer.set_rules(rules, use_conf=False)

    def authorize(self, principal: Principal, action: Action, project_id: str | None) -> None:
        """Return when ``principal`` may take ``action`` on ``project_id``'s resources (None:
        its own project); raise ``Forbidden`` otherwise."""
        target = {"project_id": project_id or principal.project_id or ""}
        creds: dict[str, Any] = {"roles": sorted(principal.roles), "user_id": principal.user_id}
        if principal.project_id is not None:  # unscoped: no project rule can match
            creds["project_id"] = principal.project_id
        if not self._enforcer.enforce(action.value, target, creds):
            raise Forbidden(f"{action.value} is not allowed")
