"""A judge behind a flaky OpenAI-compatible server, through the real CLI: rate limits are retried, a garbage
reply is a counted judge failure, and the run finishes with real ratings for the rest.

The program's model is served by the same stub (``openai/stub-lm``, always a valid answer): the embedded model
on a shared CPU takes 15-25 s an example, and adds nothing to what this test is about."""

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ANSWER = "[[ ## answer ## ]]\nOn the second Monday.\n\n[[ ## completed ## ]]"
RATING = "[[ ## rationale ## ]]\nSame meaning as the reference.\n\n[[ ## rating ## ]]\n7\n\n[[ ## completed ## ]]"
GARBAGE = "Honestly? Pretty good, I would say. Maybe a seven-ish, give or take."


class StubServer(BaseHTTPRequestHandler):
    """``/v1/chat/completions``. Model stub-lm: always an answer. Model stub-judge: 429 (Retry-After: 0) twice,
    then one garbage reply (and garbage again to DSPy's JSONAdapter retry of it), then valid ratings."""

    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._reply(404, {"error": {"message": f"no route {self.path}"}})
        if body.get("model") != "stub-judge":
            return self._complete(body, ANSWER)
        server = self.server
        json_retry = "response_format" in body or "Outputs will be a JSON object" in json.dumps(body["messages"])
        with server.lock:
            n = len(server.served) + 1
            served = "429" if n <= 2 else "garbage" if n == 3 or json_retry else "rating"
            server.served.append(served)
            server.times.append(time.perf_counter())
        if served == "429":
            return self._reply(429, {"error": {"message": "rate limited, slow down", "type": "rate_limit_error"}},
                               {"Retry-After": "0"})
        self._complete(body, GARBAGE if served == "garbage" else RATING)

    def _complete(self, body: dict, content: str):
        self._reply(200, {
            "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70},
        })

    def do_GET(self):  # noqa: N802
        self._reply(404, {"error": {"message": "not here"}})

    def _reply(self, status: int, payload: dict, headers: dict | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def stub_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubServer)
    server.lock, server.served, server.times = threading.Lock(), [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_flaky_judge_server_is_retried_and_its_garbage_counted(stub_server, tmp_path):
    port = stub_server.server_address[1]
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "cli.py", "compile", "doc_qa", "--optimizer", "none", "--lm", "openai/stub-lm",
         "--judge", "openai/stub-judge",
         "--api-base", f"http://127.0.0.1:{port}/v1", "--max-dev", "2", "--max-test", "3", "--max-train", "2",
         "--latency-sample", "0", "--no-cache", "--runs-root", str(tmp_path), "--threads", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    elapsed = time.perf_counter() - started
    gaps = [round(b - a, 2) for a, b in zip(stub_server.times, stub_server.times[1:4], strict=False)]
    print(f"CLI run took {elapsed:.1f} s; the stub judge served {stub_server.served}; first gaps {gaps} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert stub_server.served[:3] == ["429", "429", "garbage"]
    # 10 judged examples (baseline and compiled, dev 2 + test 3, --no-cache): the two rate-limited requests were
    # retried, one example's verdict was garbage, the other nine got a rating.
    assert stub_server.served.count("rating") == 9

    [summary_path] = tmp_path.rglob("summary.json")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    columns = [summary[label][split] for label in ("baseline", "compiled") for split in summary[label]]
    assert sum(c["judge_errors"] for c in columns) == 1
    assert all(c["errors"] == 0 and c["parse_failures"] == 0 and c["examples"] for c in columns)

    records = [json.loads(line) for path in summary_path.parent.glob("eval/*.jsonl")
               for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 10
    [failed] = [r for r in records if r.get("judge_error")]
    assert failed["score"] == 0.0 and failed["error"] is None and failed["judge"]["rating"] is None
    assert failed["judge"]["reply"] == GARBAGE
    rated = [r for r in records if r is not failed]
    assert all(r["judge"]["rating"] == 7 and r["score"] == 0.7 for r in rated)
    assert "judge failures" in (summary_path.parent / "report.md").read_text(encoding="utf-8")
