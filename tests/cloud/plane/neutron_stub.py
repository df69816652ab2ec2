"""A tiny stand-in for the Neutron API (runs in the plane venv or any Python >= 3.11).

Nova needs a network API even for servers booted with ``networks='none'``: it lists ports
on delete and in periodic tasks, and looks up security groups. This answers collection
GETs with empty lists (and a ``default`` security group) and refuses everything else.
Unknown requests are logged so that a missing route shows up in the plane's logs.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

DEFAULT_SG_ID = str(uuid.UUID(int=1))

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _security_group(project_id: str) -> dict[str, Any]:
    return {
        "id": DEFAULT_SG_ID,
        "name": "default",
        "description": "stub default security group",
        "tenant_id": project_id,
        "project_id": project_id,
        "security_group_rules": [],
        "stateful": True,
        "shared": False,
        "tags": [],
    }


def _reply(start: StartResponse, status: str, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
    method = environ["REQUEST_METHOD"]
    path = environ.get("PATH_INFO", "/").rstrip("/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    host = environ.get("HTTP_HOST", "127.0.0.1")
    if path.endswith(".json"):
        path = path[: -len(".json")]
    parts = [p for p in path.split("/") if p]
    if method == "GET" and not parts:
        link = {"href": f"http://{host}/v2.0/", "rel": "self"}
        return _reply(
            start, "200 OK", {"versions": [{"id": "v2.0", "status": "CURRENT", "links": [link]}]}
        )
    if method == "GET" and parts == ["v2.0"]:
        return _reply(start, "200 OK", {"resources": []})
    if method == "GET" and len(parts) == 2 and parts[0] == "v2.0":
        collection = parts[1]
        key = collection.replace("-", "_")
        if collection == "security-groups":
            project = (query.get("tenant_id") or query.get("project_id") or [""])[0]
            names = query.get("name")
            groups = [] if names and "default" not in names else [_security_group(project)]
            return _reply(start, "200 OK", {key: groups})
        if collection == "quotas":
            return _reply(start, "200 OK", {"quotas": []})
        return _reply(start, "200 OK", {key: []})
    if method == "GET" and parts == ["v2.0", "security-groups", DEFAULT_SG_ID]:
        return _reply(start, "200 OK", {"security_group": _security_group("")})
    print(
        f"neutron-stub: unhandled {method} {environ.get('PATH_INFO')}?"
        f"{environ.get('QUERY_STRING', '')}",
        file=sys.stderr,
        flush=True,
    )
    return _reply(
        start,
        "404 Not Found",
        {
            "NeutronError": {
                "type": "NotFound",
                "message": "not provided by the stackback neutron stub",
                "detail": "",
            }
        },
    )


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write("neutron-stub: " + (format % args) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with make_server(
        "127.0.0.1", args.port, app, server_class=_Server, handler_class=_Handler
    ) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
