"""A backend in "any language": it trusts the X-Auth-* headers nginx sets after authgate
said yes, and knows nothing else about authentication.

    python examples/nginx/backend.py 9000
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({
            "path": self.path,
            "host": self.headers.get("Host"),
            "user_id": self.headers.get("X-Auth-User-Id"),
            # Percent-encoded UTF-8 (``%`` and ``+`` included): decodes to exactly one name.
            "username": unquote(self.headers.get("X-Auth-Username") or "", errors="strict"),
            "roles": self.headers.get("X-Auth-Roles"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
