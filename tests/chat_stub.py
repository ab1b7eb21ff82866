"""A scripted OpenAI-compatible chat endpoint on 127.0.0.1, in the test's process, that keeps every request it gets.

For what a real model server will not do on demand: always answer one string, answer slowly, or show exactly what
it was sent (path, ``Authorization`` header, body). ``tests/real_server.py`` starts real servers.
"""

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from local_http import LocalServer, QuietHandler


def chat_reply(fields: dict[str, str]) -> str:
    """A reply in DSPy's chat format: each output field under its marker, then the completed marker."""
    return "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in fields.items()) + "[[ ## completed ## ]]"


class ChatStub(LocalServer):
    """``with ChatStub("[[ ## answer ## ]]\\n9:00 ...") as stub:`` then call ``stub.url`` (``http://127.0.0.1:PORT/v1``);
    ``stub.seen`` lists what came in, ``stub.models`` the model each chat request named. ``delay(body)`` gives the
    seconds to wait before answering a request (a slow model)."""

    def __init__(self, reply: str, *, delay: Callable[[bytes], float] | None = None):
        stub = self
        self.reply, self.delay, self.seen, self.lock = reply, delay, [], threading.Lock()

        class Handler(QuietHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                stub._keep(self, None)
                self.send_json(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self):  # noqa: N802
                raw, body = self.read_json()
                stub._keep(self, body)
                if stub.delay is not None:
                    time.sleep(stub.delay(raw))
                self.send_json(200, {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", "local"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": stub.reply},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 40, "completion_tokens": 5, "total_tokens": 45},
                })

        super().__init__(Handler)

    def _keep(self, handler: BaseHTTPRequestHandler, body) -> None:
        with self.lock:
            self.seen.append({"path": handler.path, "authorization": handler.headers.get("Authorization"),
                              "body": body})

    @property
    def models(self) -> list[str]:
        return [r["body"].get("model") for r in self.seen if isinstance(r["body"], dict)]
