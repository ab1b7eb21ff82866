"""What the scripted test servers share: a threaded HTTP server on 127.0.0.1 and a free port, running while its
``with`` block is open, and a request handler that answers JSON (or any bytes) and logs nothing."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps a client's connection, as real servers do

    def send_json(self, status: int, payload: dict) -> None:
        self.send_bytes(status, json.dumps(payload).encode(), "application/json")

    def send_bytes(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self) -> tuple[bytes, dict]:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return raw, json.loads(raw or b"{}")

    def log_message(self, *args):  # quiet
        pass


class LocalServer:
    """A ``ThreadingHTTPServer`` of ``handler`` on 127.0.0.1; ``url`` is its ``http://127.0.0.1:PORT/v1``."""

    def __init__(self, handler: type[QuietHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
