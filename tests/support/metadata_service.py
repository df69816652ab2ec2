"""An OpenStack metadata service on 127.0.0.1 for tests (stdlib http.server in a thread)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PATH = "/openstack/latest/meta_data.json"
SERVER_ID = "4b1c2a3e-0000-4000-8000-00000000beef"


@dataclass
class MetadataService:
    """An OpenStack metadata service on 127.0.0.1 (stdlib http.server in a thread)."""

    port: int
    document: Any = field(default_factory=lambda: {"uuid": SERVER_ID, "name": "web1"})
    status: int = 200
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"


@pytest.fixture
def metadata_service() -> Iterator[MetadataService]:
    service = MetadataService(0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            service.requests.append(self.path)
            document = service.document
            body = document if isinstance(document, bytes) else json.dumps(document).encode()
            self.send_response(service.status if self.path == PATH else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    service.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
