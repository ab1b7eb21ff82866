"""A scripted OpenAI-compatible completion server on 127.0.0.1, in the test's process, posing as vLLM, SGLang,
llama.cpp's server or another (``GET /v1/models``' ``owned_by``, vLLM's ``GET /version``), that keeps the body of every
completion request and streams one fixed answer. It can refuse a request carrying a given field (HTTP 400), as a
server refuses a pattern it cannot compile. ``tests/real_server.py`` starts real servers."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CompletionStub:
    """``with CompletionStub("vllm", "taxes", version="0.11.0") as stub:`` then use ``stub.url`` as --api-base;
    ``stub.bodies`` holds each ``POST /v1/completions`` body."""

    def __init__(self, owned_by: str, answer: str, *, version: str | None = None, refuse: str | None = None):
        stub = self
        self.bodies: list[dict] = []
        self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": "base", "object": "model",
                                                                 "owned_by": owned_by}]})
                elif self.path == "/version" and version is not None:
                    self._send(200, {"version": version})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with stub.lock:
                    stub.bodies.append(body)
                if refuse is not None and refuse in body:
                    self._send(400, {"error": {"message": f"{refuse}: the pattern does not compile"}})
                    return
                events = [{"choices": [{"index": 0, "text": answer, "finish_reason": "stop"}]},
                          {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 2}}]
                data = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
                self._send_raw(200, data.encode(), "text/event-stream")

            def _send(self, status: int, payload: dict) -> None:
                self._send_raw(status, json.dumps(payload).encode(), "application/json")

            def _send_raw(self, status: int, data: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def __enter__(self) -> "CompletionStub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
