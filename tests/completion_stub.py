"""A scripted OpenAI-compatible completion server on 127.0.0.1, in the test's process, posing as vLLM, SGLang,
llama.cpp's server or another (``GET /v1/models``' ``owned_by``, vLLM's ``GET /version``), that keeps the body of every
completion request and streams one fixed answer. It can refuse a request carrying a given field (HTTP 400), as a
server refuses a pattern it cannot compile. ``tests/real_server.py`` starts real servers."""

import json
import threading

from local_http import LocalServer, QuietHandler


class CompletionStub(LocalServer):
    """``with CompletionStub("vllm", "taxes", version="0.11.0") as stub:`` then use ``stub.url`` as --api-base;
    ``stub.bodies`` holds each ``POST /v1/completions`` body."""

    def __init__(self, owned_by: str, answer: str, *, version: str | None = None, refuse: str | None = None):
        stub = self
        self.bodies: list[dict] = []
        self.lock = threading.Lock()

        class Handler(QuietHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path == "/v1/models":
                    models = [{"id": "base", "object": "model", "owned_by": owned_by}]
                    self.send_json(200, {"object": "list", "data": models})
                elif self.path == "/version" and version is not None:
                    self.send_json(200, {"version": version})
                else:
                    self.send_json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):  # noqa: N802
                _, body = self.read_json()
                with stub.lock:
                    stub.bodies.append(body)
                if refuse is not None and refuse in body:
                    self.send_json(400, {"error": {"message": f"{refuse}: the pattern does not compile"}})
                    return
                events = [{"choices": [{"index": 0, "text": answer, "finish_reason": "stop"}]},
                          {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 2}}]
                data = "".join(f"data: {json.dumps(event)}\n\n" for event in events) + "data: [DONE]\n\n"
                self.send_bytes(200, data.encode(), "text/event-stream")

        super().__init__(Handler)
