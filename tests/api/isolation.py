"""Project isolation, checked over every endpoint the API documents.

:func:`assert_project_isolation` reads the app's OpenAPI document, so an endpoint added
later is covered without editing it: it fails when the endpoint has a path parameter it
has no value for. It takes tokens, so that the same check runs on the simulator with a
test authenticator and against a real Keystone with real tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

METHODS = ("get", "post", "put", "patch", "delete")
PREFIXED = ("run_id", "backup_id", "restore_id")
"""Path parameters the API also takes as a unique id prefix."""
PREFIX = 8
"""How much of an id the prefix checks give (more than the store's minimum of 6)."""
STABLE_KEYS = ("name", "project", "enabled", "protected", "retention", "targets", "deleted_at")
"""What must read the same before and after the intruder and the reader tried everything."""


class _Nobody(dict[str, str]):
    """Path parameters naming nothing that exists."""

    def __missing__(self, key: str) -> str:
        return "00000000-0000-4000-8000-000000000000"


NOBODY = _Nobody()


class _Prefixes(dict[str, str]):
    """Path parameters as given, an id prefix replaced by one of no id."""

    def __init__(self, given: Mapping[str, str]) -> None:
        super().__init__({k: ("f" * PREFIX if k in PREFIXED else v) for k, v in given.items()})


def _operations(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in sorted(document["paths"].items())
        for method in METHODS
        if method in item
    ]


def _params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _call(client: httpx.Client, token: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    body = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    return client.request(method, url, headers={"X-Auth-Token": token}, **body, **kwargs)


def _stable(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        return {}
    return {key: document.get(key) for key in STABLE_KEYS if key in document}


def assert_project_isolation(
    client: httpx.Client,
    *,
    alpha: Mapping[str, str],
    owner_token: str,
    intruder_token: str,
    reader_token: str,
) -> list[str]:
    """Check every documented endpoint against alpha's resources; the endpoints checked.

    ``alpha`` maps each path parameter of the API to one of project alpha's resources
    (``policy``: a policy id; ``run_id``, ``backup_id``, ``restore_id``; ``server``: a
    server alpha backs up with a server shortcut). ``owner_token`` is a member of alpha,
    ``reader_token`` a reader of alpha, ``intruder_token`` a member of another project.

    - the intruder gets 404 from every endpoint naming one of alpha's resources (a GET
      that is not about a stackback resource, such as a server's coverage, may answer 200
      but must not name any of alpha's ids; so may the server shortcuts, which act on the
      intruder's own policy for a server of that name); its lists name none of alpha's
      ids; asking for every project's (``?all_projects=1``) is refused (403);
    - the same holds when alpha's run, backup or restore is named by an id prefix (which
      alpha's owner resolves: a GET of it answers 200): 404, as a prefix of no id;
    - the reader gets 403 from every endpoint that is not a GET (it reads alpha's: 200);
    - afterwards alpha still sees each of its resources as it was.
    """
    document = client.get("/openapi.json").json()
    operations = _operations(document)
    secrets = [value for key, value in alpha.items() if key != "server"]
    for method, path in operations:
        missing = [name for name in _params(path) if name not in alpha]
        assert not missing, f"{method} {path}: no resource of alpha given for {missing}"

    def read_as_owner() -> dict[str, dict[str, Any]]:
        seen = {}
        for method, path in operations:
            if method == "GET" and _params(path):
                response = _call(client, owner_token, method, path.format(**alpha))
                assert response.status_code == 200, (path, response.text)
                seen[path] = _stable(response.json())
            elif method == "GET":
                response = _call(client, owner_token, method, path)
                assert response.status_code == 200, (path, response.text)
                assert any(s in response.text for s in secrets), f"{path}: alpha sees nothing"
        return seen

    before = read_as_owner()
    checked = []
    for method, path in operations:
        prefixed = {
            name: alpha[name][:PREFIX] if name in PREFIXED else alpha[name]
            for name in _params(path)
        }
        if prefixed == {name: alpha[name] for name in _params(path)}:
            continue
        url = path.format(**prefixed)
        if method == "GET":
            own = _call(client, owner_token, method, url)
            assert own.status_code == 200, (method, url, "owner by prefix", own.text)
        response = _call(client, intruder_token, method, url)
        assert response.status_code == 404, (method, url, "by prefix", response.text)
        unknown = _call(client, intruder_token, method, path.format_map(_Prefixes(prefixed)))
        assert unknown.status_code == 404, (method, path, "unknown prefix", unknown.text)
        assert unknown.json()["error"]["code"] == response.json()["error"]["code"]
        leaked = [s for s in secrets if s in response.text]
        assert not leaked, (method, url, "names alpha's", leaked, response.text)
        checked.append(f"{method} {path} (by id prefix)")
    for method, path in operations:
        url = path.format(**alpha)
        response = _call(client, intruder_token, method, url)
        asked = {alpha[name] for name in _params(path)}
        leaked = [s for s in secrets if s in response.text and s not in asked]
        if _params(path):
            # a server is not a stackback resource: the intruder's shortcut for a server of
            # the same name is its own policy (alpha's must stay as it was, checked below)
            own = _params(path) == ["server"] and response.status_code == 200
            if not (method == "GET" and response.status_code == 200) and not own:
                assert response.status_code == 404, (method, path, response.status_code)
                # and exactly as for a resource that does not exist: nothing tells them apart
                unknown = _call(client, intruder_token, method, path.format_map(NOBODY))
                assert unknown.status_code == 404, (method, path, unknown.text)
                assert unknown.json()["error"]["code"] == response.json()["error"]["code"]
            assert not leaked, (method, path, "names alpha's", leaked, response.text)
        elif method == "GET":
            assert response.status_code == 200, (method, path, response.text)
            assert not leaked, (method, path, "lists alpha's", leaked)
            everything = _call(client, intruder_token, method, url, params={"all_projects": 1})
            assert everything.status_code == 403, (method, path, "all_projects")
        if method != "GET":
            refused = _call(client, reader_token, method, url)
            assert refused.status_code == 403, (method, path, "reader", refused.text)
        checked.append(f"{method} {path}")
    assert read_as_owner() == before
    return checked
