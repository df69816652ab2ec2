"""The oslo.policy authorizer (personas, the operator's policy file) and local mode's token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from stackback.errors import Forbidden, InvalidInput, Unauthenticated
from stackback.services.access import Action, Principal
from stackback.services.authz import READ_ACTIONS, PolicyAuthorizer
from stackback.services.local_auth import LocalAuthenticator, ensure_local_token

READER = Principal("r", "alpha", frozenset({"reader"}))
MEMBER = Principal("m", "alpha", frozenset({"member"}))
ADMIN = Principal("a", "ops", frozenset({"admin"}))
UNSCOPED_MEMBER = Principal("u", None, frozenset({"member"}))
WRITE_ACTIONS = [a for a in Action if a not in READ_ACTIONS and a is not Action.ALL_PROJECTS]


def allowed(
    authorizer: PolicyAuthorizer, who: Principal, action: Action, project: str | None
) -> bool:
    try:
        authorizer.authorize(who, action, project)
    except Forbidden:
        return False
    return True


@pytest.mark.parametrize("action", list(Action))
def test_personas(action: Action) -> None:
    rules = PolicyAuthorizer()
    reads = action in READ_ACTIONS
    if action is Action.ALL_PROJECTS:
        assert not allowed(rules, MEMBER, action, None)
        assert allowed(rules, ADMIN, action, None)
        return
    assert allowed(rules, READER, action, "alpha") is reads
    assert allowed(rules, MEMBER, action, "alpha")
    assert not allowed(rules, MEMBER, action, "beta")
    assert not allowed(rules, READER, action, "beta")
    assert allowed(rules, ADMIN, action, "beta")
    assert allowed(rules, MEMBER, action, None)  # its own project's listing
    assert not allowed(rules, UNSCOPED_MEMBER, action, None)  # no project matches none
    assert not allowed(rules, Principal("x", "alpha", frozenset()), action, "alpha")


def test_every_write_action_needs_a_member() -> None:
    assert WRITE_ACTIONS
    rules = PolicyAuthorizer()
    assert not any(allowed(rules, READER, action, "alpha") for action in WRITE_ACTIONS)


def test_the_operators_policy_file_overrides_a_default(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('"stackback:policy:create": "role:admin"\n"stackback:backup:list": "@"\n')
    rules = PolicyAuthorizer(path)
    assert not allowed(rules, MEMBER, Action.POLICY_CREATE, "alpha")
    assert allowed(rules, ADMIN, Action.POLICY_CREATE, "alpha")
    assert allowed(rules, Principal("x", "beta", frozenset()), Action.BACKUP_LIST, "alpha")
    assert allowed(rules, MEMBER, Action.POLICY_UPDATE, "alpha")  # the others stay


def test_a_missing_or_broken_policy_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        PolicyAuthorizer(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text('"x": [unclosed\n')
    with pytest.raises(InvalidInput, match="policy file"):
        PolicyAuthorizer(broken)


def test_local_token_is_made_once_private_and_proves_an_admin(tmp_path: Path) -> None:
    token, created = ensure_local_token(tmp_path / "state")
    assert created and len(token) >= 40
    path = tmp_path / "state" / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_local_token(tmp_path / "state") == (token, False)

    auth = LocalAuthenticator(token)
    who = auth.authenticate(token)
    assert who.project_id is None and "admin" in who.roles
    assert allowed(PolicyAuthorizer(), who, Action.ALL_PROJECTS, None)
    for wrong in (None, "", token[:-1], token + "x"):
        with pytest.raises(Unauthenticated):
            auth.authenticate(wrong)
