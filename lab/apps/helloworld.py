"""Istio's helloworld sample as the lab runs it: ``GET /hello`` answers
``Hello version: <SERVICE_VERSION>, instance: <HOSTNAME>`` (the sample image's exact text), ``GET
/health`` answers ``Helloworld is healthy``; port 5000 on every address of the pod.

Run inside a pod's network namespace by the lab's data plane (``python -m lab.apps.helloworld``).
"""

from __future__ import annotations

import http.server
import os
import signal
import sys

PORT = 5000


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/hello":
            body = (
                f"Hello version: {os.environ.get('SERVICE_VERSION', '')}, instance: {os.environ.get('HOSTNAME', '')}\n"
            )
            status = 200
        elif self.path == "/health":
            body, status = "Helloworld is healthy\n", 200
        else:
            body, status = "not found\n", 404
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", PORT))), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"helloworld {os.environ.get('SERVICE_VERSION')} serving on :{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
