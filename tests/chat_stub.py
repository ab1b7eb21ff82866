"""A scripted OpenAI-compatible chat endpoint on 127.0.0.1, in the test's process, that keeps every request it gets.

For what a real model server will not do on demand: always answer one string, answer slowly, or show exactly what
it was sent (path, ``Authorization`` header, body). ``tests/real_server.py`` starts real servers.
"""

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def chat_reply(fields: dict[str, str]) -> str:
    """A reply in DSPy's chat format: each output field under its marker, then the completed marker."""
    return "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in fields.items()) + "[[ ## completed ## ]]"


class ChatStub:
    """``with ChatStub("[[ ## answer ## ]]\\n9:00 ...") as stub:`` then call ``stub.url`` (``http://127.0.0.1:PORT/v1``);
    ``stub.seen`` lists what came in, ``stub.models`` the model each chat request named. ``delay(body)`` gives the
    seconds to wait before answering a request (a slow model)."""

    def __init__(self, reply: str, *, delay: Callable[[bytes], float] | None = None):
        stub = self
        self.reply, self.delay, self.seen, self.lock = reply, delay, [], threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps a client's connection, as real servers do

            def do_GET(self):  # noqa: N802 - http.server's name
                stub._keep(self, None)
                self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                stub._keep(self, body)
                if stub.delay is not None:
                    time.sleep(stub.delay(raw))
                self._send(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "local"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": stub.reply},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45},
                })

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _keep(self, handler: BaseHTTPRequestHandler, body) -> None:
        with self.lock:
            self.seen.append({"path": handler.path, "authorization": handler.headers.get("Authorization"),
                              "body": body})

    @property
    def models(self) -> list[str]:
        return [r["body"].get("model") for r in self.seen if isinstance(r["body"], dict)]

    def __enter__(self) -> "ChatStub":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
