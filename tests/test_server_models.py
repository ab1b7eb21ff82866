"""Models behind a server, through the real CLI against a real HTTP server process on 127.0.0.1 (an
OpenAI-compatible one written here, which records every request it gets).

- ``--api-base http://user:PASSWORD@host/v1``: the URL goes on without its user part, the password is the
  request's key (``Authorization: Bearer PASSWORD``);
- ``eval`` and ``run`` of that run call a server only where the user says: ``--api-base URL``, or ``--api-base
  recorded`` for the run's recorded server (its program model and its judge), and say which in one line; without
  either they are refused in one line and nothing is sent; the password, never recorded, comes from
  ``$SMELT_API_KEY`` or from --api-base given again, and without either the command asks for it in one line;
- every request carries the task's ``max_tokens`` and the adapter's stop strings;
- the password is in no file under the runs root and in no line printed;
- a server that refuses the connection is one ``error:`` line from ``run``, no traceback.
"""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mistakes import CLI, ENV, run_mistake

from smelt.errors import SmeltError

SECRET = "s3cret-pw"
ANSWER = "[[ ## answer ## ]]\n9:00\n\n[[ ## completed ## ]]"
RATING = "[[ ## rationale ## ]]\nSame time as the reference.\n\n[[ ## rating ## ]]\n8\n\n[[ ## completed ## ]]"
DOCUMENT = "The city pool opens at 9:00 on weekdays and at 10:00 on Sundays."
QUESTION = "When does the pool open on weekdays?"
# A chat model takes no answer pattern, and constrain is on by default: said once per process.
UNCONSTRAINED_CHAT = ("[smelt] openai/local-model: answers are not constrained (a chat model answers in its provider's "
                      "format, not DSPy's marker format); they are checked after they are written")

# The server, run with ``sys.executable`` as a process of its own: argv[1] is the request log (JSON lines: path,
# Authorization header, body), argv[2] the file it writes its port to once it listens, argv[3] its replies (JSON:
# {model: content}, "*" for any other model).
SERVER = r'''
import json, os, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOG, PORT_FILE, REPLIES = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def _record(self, body):
        with lock, open(LOG, "a", encoding="utf-8") as log:
            log.write(json.dumps({"method": self.command, "path": self.path,
                                  "authorization": self.headers.get("Authorization"), "body": body}) + "\n")

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self._record(body)
        if not self.path.rstrip("/").endswith("/chat/completions") or not isinstance(body, dict):
            return self._reply(404, {"error": {"message": "no route " + self.path}})
        content = REPLIES.get(body.get("model"), REPLIES["*"])
        if content.startswith("SLEEP "):  # a model that takes that long; then, did the client wait for it?
            time.sleep(float(content.split()[1]))
            self.connection.setblocking(False)
            try:
                gone = self.connection.recv(1, socket.MSG_PEEK) == b""
            except BlockingIOError:
                gone = False
            self.connection.setblocking(True)
            self._record({"slow_reply_for": body.get("model"), "client_gone": gone})
            content = ANSWER
        self._reply(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                          "model": body.get("model", "local"),
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                       "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 50, "completion_tokens": 8, "total_tokens": 58}})

    def do_GET(self):
        self._record(None)
        self._reply(404, {"error": {"message": "no route " + self.path}})

    def _reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server process: {"port", "log" (its request log), "requests()" (what it has been sent)}."""
    folder = tmp_path_factory.mktemp("server")
    script, log, port_file = folder / "server.py", folder / "requests.jsonl", folder / "port"
    script.write_text(SERVER, encoding="utf-8")
    replies = json.dumps({"*": ANSWER, "local-judge": RATING, "slow-model": "SLEEP 8"})
    process = subprocess.Popen([sys.executable, str(script), str(log), str(port_file), replies],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while not port_file.exists():
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            pytest.fail(f"the test server did not start: {process.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)

    def requests() -> list[dict]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]

    yield {"port": int(port_file.read_text()), "log": log, "requests": requests}
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def compiled(server, tmp_path_factory):
    """``compile doc_qa`` on the server's model, judged by the server's judge, with the password in --api-base."""
    base = tmp_path_factory.mktemp("compiled")
    runs = base / "runs"
    before = len(server["requests"]())
    result = _cli(["compile", "doc_qa", "--lm", "openai/local-model", "--judge", "openai/local-judge",
                   "--api-base", _api_base(server), "--optimizer", "none", "--max-dev", "2", "--max-test", "2",
                   "--latency-sample", "0", "--no-cache", "--runs-root", str(runs)], base)
    assert result.returncode == 0, result.stderr[-3000:]
    [run_dir] = (runs / "doc_qa").iterdir()
    return {"runs": runs, "run": run_dir, "base": base, "outputs": [result],
            "requests": server["requests"]()[before:]}


def _api_base(server, port: int | None = None) -> str:
    return f"http://user:{SECRET}@127.0.0.1:{port or server['port']}/v1"


def _env(base: Path, **extra) -> dict:
    """The CLI's environment: no key of a hosted API, DSPy's cache in the test's folder, and ``extra``."""
    env = {k: v for k, v in ENV.items() if k not in ("OPENAI_API_KEY", "SMELT_API_KEY")}
    return {**env, "DSPY_CACHEDIR": str(base / "dspy_cache"), **extra}


def _cli(args: list[str], base: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *args], cwd=base, env=_env(base, **env), capture_output=True,
                          text=True, timeout=300)


def _expected_budget_and_stops():
    """doc_qa's answer predictor: its max_tokens and the stop strings a server request of it must carry."""
    from smelt.lm.server_adapter import ServerChatAdapter
    from smelt.programs.registry import get_task

    [predictor] = get_task("doc_qa").program().predictors()
    return predictor.config["max_tokens"], ServerChatAdapter().stop_strings(predictor.signature)


def _check_requests(requests: list[dict], models: set[str]) -> None:
    """Every request came to the chat endpoint with the password as its bearer key, the task's token budget and the
    adapter's stop strings (the program model's exactly; the judge's own budget and its stop strings)."""
    from smelt.lm.prefill_adapter import COMPLETED_MARKER

    max_tokens, stops = _expected_budget_and_stops()
    assert requests, "the server got no request"
    assert {r["body"]["model"] for r in requests} == models
    for request in requests:
        assert request["path"] == "/v1/chat/completions"
        assert request["authorization"] == f"Bearer {SECRET}"
        body = request["body"]
        assert isinstance(body.get("max_tokens"), int) and body["max_tokens"] > 0, body.keys()
        assert body["stop"][0] == COMPLETED_MARKER
        if body["model"] == "local-model":
            assert body["max_tokens"] == max_tokens and body["stop"] == stops


def _assert_no_secret(compiled: dict, *outputs: subprocess.CompletedProcess) -> None:
    """The password is in no file under the runs root (nor DSPy's cache) and in nothing printed."""
    leaks = [str(p) for folder in (compiled["runs"], compiled["base"] / "dspy_cache") if folder.exists()
             for p in folder.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaks, f"the password is written in {leaks}"
    for result in (*compiled["outputs"], *outputs):
        assert SECRET not in result.stdout + result.stderr, (result.args, result.stderr[-2000:])


def test_compile_sends_the_password_as_the_key_with_budget_and_stops(server, compiled):
    _check_requests(compiled["requests"], {"local-model", "local-judge"})
    manifest = json.loads((compiled["run"] / "manifest.json").read_text(encoding="utf-8"))
    recorded = f"http://user:***@127.0.0.1:{server['port']}/v1"
    assert manifest["options"]["api_base"] == recorded
    assert manifest["models"]["program"]["api_base"] == recorded
    assert manifest["models"]["judge"]["api_base"] == recorded
    _assert_no_secret(compiled)


def test_eval_and_run_reuse_the_recorded_server_when_told(server, compiled):
    """--api-base recorded: the run's server, for the program model and the judge; the key from $SMELT_API_KEY."""
    base, run = compiled["base"], str(compiled["run"])
    before = len(server["requests"]())
    evaluated = _cli(["eval", "--program", run, "--max-test", "2", "--latency-sample", "0", "--no-cache",
                      "--runs-root", str(compiled["runs"]), "--api-base", "recorded"], base, SMELT_API_KEY=SECRET)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    shown = (f"the run's API base http://127.0.0.1:{server['port']}/v1 (--api-base recorded), with the key in "
             "$SMELT_API_KEY")
    assert f"[smelt] program model openai/local-model: {shown}" in evaluated.stderr
    assert f"[smelt] judge openai/local-judge: {shown}" in evaluated.stderr
    eval_requests = server["requests"]()[before:]
    _check_requests(eval_requests, {"local-model", "local-judge"})
    assert len([r for r in eval_requests if r["body"]["model"] == "local-model"]) == 2  # the 2 test examples

    before = len(server["requests"]())
    answered = _cli(["run", "--program", run, "--api-base", "recorded", "-i", f"document={DOCUMENT}", "-i",
                     f"question={QUESTION}"], base, SMELT_API_KEY=SECRET)
    assert answered.returncode == 0, answered.stderr[-3000:]
    assert answered.stdout.strip() == "9:00"
    assert [line for line in answered.stderr.splitlines() if line.strip()] == \
        [f"[smelt] program model openai/local-model: {shown}",
         f"[smelt] the key in $SMELT_API_KEY is sent to http://127.0.0.1:{server['port']}/v1",
         UNCONSTRAINED_CHAT]
    [request] = server["requests"]()[before:]
    _check_requests([request], {"local-model"})
    assert DOCUMENT in json.dumps(request["body"]["messages"])

    # The password given again in --api-base, and no key in the environment.
    before = len(server["requests"]())
    again = _cli(["run", "--program", run, "--api-base", _api_base(server), "-i", f"document={DOCUMENT}",
                  "-i", "question=Is the pool open on Sundays?"], base)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"API base http://user:***@127.0.0.1:{server['port']}/v1 (--api-base)" in again.stderr
    _check_requests(server["requests"]()[before:], {"local-model"})
    _assert_no_secret(compiled, evaluated, answered, again)


def test_a_server_without_a_password_is_reused_as_recorded(server, compiled, tmp_path):
    """A run on a server that takes no key (``--api-base http://127.0.0.1:PORT/v1``): ``run --api-base recorded``
    goes back to it, with the placeholder key LiteLLM needs to send anything."""
    import shutil

    run = shutil.copytree(compiled["run"], tmp_path / "runs" / "doc_qa" / compiled["run"].name)
    manifest = run / "manifest.json"
    manifest.write_text(manifest.read_text(encoding="utf-8").replace("http://user:***@", "http://"),
                        encoding="utf-8")
    before = len(server["requests"]())
    answered = _cli(["run", "--program", str(run), "--api-base", "recorded", "-i", f"document={DOCUMENT}", "-i",
                     f"question={QUESTION}"], tmp_path)
    assert answered.returncode == 0, answered.stderr[-3000:]
    assert answered.stdout.strip() == "9:00"
    assert answered.stderr.strip().splitlines() == [f"[smelt] program model openai/local-model: the run's API base "
                                                    f"http://127.0.0.1:{server['port']}/v1 (--api-base recorded)",
                                                    UNCONSTRAINED_CHAT]
    [request] = server["requests"]()[before:]
    assert request["authorization"] == "Bearer EMPTY" and request["path"] == "/v1/chat/completions"


def test_a_teacher_run_reuses_its_recorded_server(server, compiled, monkeypatch):
    """``distill --teacher RUN`` (and a distill sweep's teacher): the teacher's program on the run's server."""
    import dspy

    from smelt.commands.distill import DistillOptions
    from smelt.commands.teacher import load_teacher
    from smelt.programs.registry import get_task

    monkeypatch.setenv("SMELT_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    said: list[str] = []
    options = DistillOptions(student="gemma-3-270m", teacher=str(compiled["run"]), task="doc_qa", cache=False,
                             api_base="recorded")
    teacher = load_teacher(options, get_task("doc_qa"), log=said.append)
    assert said == [f"[smelt] teacher openai/local-model: the run's API base http://127.0.0.1:{server['port']}/v1 "
                    "(--api-base recorded), with the key in $SMELT_API_KEY"]
    before = len(server["requests"]())
    with teacher.lm.context():
        prediction = teacher.program(document=DOCUMENT, question="Teacher, when does the pool open?")
    assert isinstance(prediction, dspy.Prediction) and prediction.answer == "9:00"
    _check_requests(server["requests"]()[before:], {"local-model"})


def test_a_recorded_password_must_be_given_again(server, world, compiled, tmp_path):
    """--api-base recorded and no $SMELT_API_KEY: one line asking for --api-base, nothing sent, nothing written."""
    before = len(server["requests"]())
    for command in (["run", "--program", str(compiled["run"]), "--api-base", "recorded", "-i",
                     f"document={DOCUMENT}", "-i", f"question={QUESTION}"],
                    ["eval", "--program", str(compiled["run"]), "--api-base", "recorded"]):
        result = run_mistake(world, tmp_path / command[0], command,
                             ["openai/local-model", "http://user:***@127.0.0.1", "pass --api-base again",
                              "SMELT_API_KEY"], env=_env(tmp_path))
        assert SECRET not in result.stderr
    assert len(server["requests"]()) == before


def test_run_on_a_server_that_refuses_is_one_line(server, world, compiled, tmp_path):
    """A closed port: ``run`` says so in one line (after its API base line), no traceback, no password."""
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = run_mistake(world, tmp_path / "work", ["run", "--program", str(compiled["run"]), "--api-base",
                                                    _api_base(server, port=closed), "-i", f"document={DOCUMENT}",
                                                    "-i", f"question={QUESTION}"],
                         ["the call to openai/local-model failed", "check the model spec, --api-base"],
                         allow_new_run=True, env=_env(tmp_path))
    assert SECRET not in result.stdout + result.stderr
    assert result.stdout == ""


def test_run_without_an_api_key_is_one_line(world, compiled, tmp_path):
    """Another model of a hosted API and no key: DSPy's LMNotConfiguredError, as one line."""
    result = run_mistake(world, tmp_path / "work", ["run", "--program", str(compiled["run"]), "--lm",
                                                    "openai/gpt-4o-mini", "-i", f"document={DOCUMENT}", "-i",
                                                    f"question={QUESTION}"],
                         ["the call to openai/gpt-4o-mini failed", "LMNotConfiguredError", "OPENAI_API_KEY"],
                         allow_new_run=True, env=_env(tmp_path))
    assert "the provider's own API" in result.stderr


@pytest.mark.parametrize("api_base, key", [
    ("https://user:t0ken-123@gpu-box:8000/v1", "t0ken-123"),
    ("https://t0ken-123@gpu-box:8000/v1", "t0ken-123"),
    ("https://user:t0k%2Fen-1@gpu-box:8000/v1", "t0k/en-1"),
])
def test_userinfo_is_the_key_and_never_the_host(api_base, key, monkeypatch):
    from smelt.lm import lm_for_spec
    from smelt.redaction import redact, redact_text

    monkeypatch.delenv("SMELT_API_KEY", raising=False)
    resolved = lm_for_spec("openai/served", api_base=api_base, cache=False)
    assert resolved.lm.kwargs["api_base"] == "https://gpu-box:8000/v1"
    assert resolved.lm.kwargs["api_key"] == key
    assert key not in json.dumps(resolved.describe()) and "***@gpu-box" in resolved.describe()["api_base"]
    assert redact_text(f"failed with key {key} at gpu-box") == "failed with key *** at gpu-box"
    assert key not in redact(api_base)


def test_the_environment_key_is_used_for_a_server_only(monkeypatch):
    from smelt.lm import lm_for_spec
    from smelt.redaction import redact_text

    monkeypatch.setenv("SMELT_API_KEY", "env-key-4567")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-provider-890")
    served = lm_for_spec("openai/served", api_base="http://127.0.0.1:8000/v1", cache=False)
    assert served.lm.kwargs["api_key"] == "env-key-4567"
    hosted = lm_for_spec("openai/gpt-4o-mini", cache=False)  # a hosted API reads its own variable
    assert "api_key" not in hosted.lm.kwargs and "api_base" not in hosted.lm.kwargs
    assert redact_text("Bearer env-key-4567, sk-provider-890") == "Bearer ***, ***"
    monkeypatch.delenv("SMELT_API_KEY")  # the provider's variable, read by LiteLLM
    assert "api_key" not in lm_for_spec("openai/served", api_base="http://127.0.0.1:8000/v1").lm.kwargs
    monkeypatch.delenv("OPENAI_API_KEY")  # no key anywhere: the placeholder a server without authentication ignores
    assert lm_for_spec("openai/served", api_base="http://127.0.0.1:8000/v1").lm.kwargs["api_key"] == "EMPTY"


def test_a_redacted_password_needs_the_key(monkeypatch):
    from smelt.lm.credentials import endpoint

    monkeypatch.delenv("SMELT_API_KEY", raising=False)
    with pytest.raises(SmeltError, match=r"http://user:\*\*\*@h/v1: its password was redacted .* SMELT_API_KEY"):
        endpoint("http://user:***@h/v1", "openai")


def test_files_and_records_never_hold_a_registered_secret(tmp_path):
    from smelt.files import write_json, write_text
    from smelt.redaction import register_secret

    register_secret("pa55-w0rd-xyz")
    write_json(tmp_path / "a.json", {"error": "401 for key pa55-w0rd-xyz", "prompt_tokens": 3,
                                     "url": "https://me:other-pw@h/v1"})
    write_text(tmp_path / "b.md", "see https://me:other-pw@h/v1 (pa55-w0rd-xyz)")
    assert json.loads((tmp_path / "a.json").read_text()) == {"error": "401 for key ***", "prompt_tokens": 3,
                                                             "url": "https://me:***@h/v1"}
    assert (tmp_path / "b.md").read_text() == "see https://me:***@h/v1 (***)"


def test_a_completion_endpoint_model_is_budgeted_as_in_process():
    # A base model behind /v1/completions is prompted as in-process, so a predictor without max_tokens (a judge's
    # verdict) gets the in-process budget: it stops where it would in-process, even on a server that ignores `stop`.
    from smelt.lm import lm_for_spec
    from smelt.lm.build import SERVER_MAX_TOKENS
    from smelt.lm.generation import DEFAULT_MAX_TOKENS

    completion = lm_for_spec("text-completion-openai/base", api_base="http://127.0.0.1:9/v1")
    chat = lm_for_spec("openai/chat", api_base="http://127.0.0.1:9/v1")
    assert completion.lm.kwargs["max_tokens"] == DEFAULT_MAX_TOKENS < SERVER_MAX_TOKENS == chat.lm.kwargs["max_tokens"]
    given = lm_for_spec("text-completion-openai/base", api_base="http://127.0.0.1:9/v1", max_tokens=40)
    assert given.lm.kwargs["max_tokens"] == 40


def test_serve_waits_for_a_server_model_about_its_timeout_and_never_retries(server, compiled, tmp_path):
    # Past --timeout the request is a 504; the model call on the server is neither left running nor sent again.
    import httpx

    from tests.real_server import SmeltServe

    before = len(server["requests"]())
    served = SmeltServe(str(compiled["run"]), "--lm", "openai/slow-model", "--api-base", _api_base(server),
                        "--timeout", "2", env=_env(tmp_path))
    try:
        started = time.monotonic()
        reply = httpx.post(served.url + "/v1/predict", json={"document": DOCUMENT, "question": QUESTION}, timeout=60)
        took = time.monotonic() - started
        deadline = time.monotonic() + 30
        while not any("slow_reply_for" in (r["body"] or {}) for r in server["requests"]()[before:]):
            assert time.monotonic() < deadline, "the slow model never finished"
            time.sleep(0.2)
    finally:
        assert served.stop() == 0, served.output[-2000:]
    assert reply.status_code == 504 and "--timeout" in reply.json()["error"]["message"] and took < 6
    sent = [r for r in server["requests"]()[before:] if "messages" in (r["body"] or {})]
    assert len(sent) == 1  # never retried
    [done] = [r["body"] for r in server["requests"]()[before:] if "slow_reply_for" in (r["body"] or {})]
    assert done["client_gone"]  # its connection was closed: the server could stop generating
    assert SECRET not in served.output
