"""`python cli.py serve RUN_DIR` end to end: the real server process on a doc_qa compile run of the embedded model,
called with a real HTTP client (and a real headless Chromium for the try-it page).

The run is a short real compile (two labeled demos, scored on two test examples, DSPy's cache off), so the answers
the server gives can be compared with those the run's evaluation recorded."""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.real_server import SmeltServe, serve_error_line

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "serve-test-" + secrets.token_urlsafe(16)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "SERVE_TEST_TOKEN": TOKEN}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "compile", "doc_qa", "--optimizer", "labeled",
                             "--max-train", "2", "--max-dev", "1", "--max-test", "2", "--latency-sample", "0",
                             "--no-cache", "--runs-root", str(root)],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(re.search(r"run directory: (\S+)", result.stdout).group(1))


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "requests.jsonl"
    running = SmeltServe(str(run_dir), "--threads", "8", "--token-env", "SERVE_TEST_TOKEN", "--log", str(log), env=ENV)
    running.log = log
    yield running
    assert running.stop() == 0, running.output[-3000:]


def shipped_inputs(n: int) -> list[dict]:
    """n doc_qa questions with their documents, English and Japanese alternating."""
    from smelt.programs.registry import get_task

    data = get_task("doc_qa").shipped_data()
    pool = data.dev + data.test
    english = [e for e in pool if e.language == "en"]
    japanese = [e for e in pool if e.language == "ja"]
    pairs = [e for pair in zip(english, japanese, strict=False) for e in pair][:n]
    return [{"document": e.document, "question": e.question} for e in pairs]


def test_predict_gives_the_answers_the_run_recorded(server, run_dir):
    records = [json.loads(line) for line in (run_dir / "eval" / "test.jsonl").read_text().splitlines()]
    assert len(records) == 2
    with server.client(headers=AUTH) as client:
        for record in records:
            reply = client.post("/v1/predict", json=record["inputs"])
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["outputs"]["answer"] == record["prediction"].strip()
            assert body["latency_s"] > 0 and body["usage"]["completion_tokens"] > 0
            assert body["usage"]["prompt_tokens"] > 100 and body["usage"]["lm_calls"] == 1
            assert body["passages"] is None  # doc_qa retrieves from its one document, it cites none


def test_program_and_openapi_describe_the_task(server, run_dir):
    with server.client(headers=AUTH) as client:
        program = client.get("/v1/program").json()
        schema = client.get("/openapi.json").json()
        models = client.get("/v1/models").json()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert program["task"]["name"] == "doc_qa"
    assert [f["name"] for f in program["task"]["inputs"]] == ["document", "question"]
    assert program["task"]["inputs"][0]["long"] and not program["task"]["inputs"][1]["long"]
    assert program["program"]["predictors"][0]["demos"] == 2
    assert program["model"]["spec"] == "gemma-3-270m" and "api_key" not in json.dumps(program)
    assert Path(program["program_run"]) == run_dir
    assert program["measured"]["scores"]["compiled"]["test"] == summary["compiled"]["test"]["score"]
    inputs = schema["components"]["schemas"]["DocQaInputs"]
    assert inputs["required"] == ["document", "question"] and inputs["additionalProperties"] is False
    assert inputs["properties"]["document"]["type"] == "string"
    assert "passages of it most related" in inputs["properties"]["document"]["description"]
    assert all(p["description"] for p in inputs["properties"].values())
    assert "answer" in schema["components"]["schemas"]["DocQaOutputs"]["properties"]
    assert models["data"][0]["id"] == program["model"]["id"]


def test_eight_concurrent_requests_share_decode_steps(server):
    inputs = shipped_inputs(8)
    with server.client(headers=AUTH) as client:
        def answer(one: dict) -> dict:
            reply = client.post("/v1/predict", json=one)
            assert reply.status_code == 200, reply.text
            return reply.json()

        def steps() -> int:
            return client.get("/healthz").json()["decode_steps"]

        before = steps()
        alone = [answer(one) for one in inputs]  # one at a time: each request decodes on its own
        between = steps()
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(answer, inputs))
        after = steps()
        health = client.get("/healthz").json()
    tokens = sum(a["usage"]["completion_tokens"] for a in together)
    assert [a["outputs"] for a in together] == [a["outputs"] for a in alone]  # batching changes no answer
    assert tokens == sum(a["usage"]["completion_tokens"] for a in alone) and tokens >= 16
    alone_steps, together_steps = between - before, after - between
    # Requests decoded together share each step: far fewer steps than one at a time, and than tokens generated.
    assert together_steps <= 0.6 * alone_steps, (together_steps, alone_steps)
    assert together_steps <= 0.5 * tokens, (together_steps, tokens)
    assert health["peak_batch"] >= 4 and health["in_flight"] == 0 and health["status"] == "ok"
    assert health["prompt_pass_s"] > 0 and health["decode_step_s"] > 0  # where the engine's time went


def test_bad_requests_are_refused_by_name_and_the_server_stays_up(server):
    good = {"document": "The pool opens at 10:00.", "question": "When does the pool open?"}
    with server.client(headers=AUTH) as client:
        cases = {"question": {"document": "x"}, "topic": {**good, "topic": "pools"},
                 "document": {**good, "document": 3}}
        for field, body in cases.items():
            reply = client.post("/v1/predict", json=body)
            assert reply.status_code == 422, reply.text
            assert [e["loc"] for e in reply.json()["detail"]] == [["body", field]]
        blank = client.post("/v1/predict", json={**good, "question": "\u200b "})  # only invisible characters
        assert blank.status_code == 422
        [error] = blank.json()["detail"]
        assert error["loc"] == ["body", "question"] and "invisible" in error["msg"]
        big = {**good, "document": "x" * 1_100_000}
        assert client.post("/v1/predict", json=big).status_code == 413
        encoded = json.dumps(big).encode()
        chunks = (encoded[at:at + 65536] for at in range(0, len(encoded), 65536))  # no Content-Length: chunked
        chunked = client.post("/v1/predict", content=chunks, headers={"content-type": "application/json"})
        assert chunked.status_code == 413 and "--max-request-bytes" in chunked.json()["error"]["message"]
        tools = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}],
                                                          "tools": [{"type": "function"}]})
        assert tools.status_code == 422 and tools.json()["detail"][0]["loc"] == ["body", "tools"]
        assert client.get("/healthz").json()["status"] == "ok"
    with server.client() as anonymous:
        assert anonymous.post("/v1/predict", json=good).status_code == 401
        wrong = anonymous.get("/v1/program", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/openapi.json").status_code == 401
        page = anonymous.get("/")  # the page itself asks for the token
        assert page.status_code == 200 and "connect-src 'self'" in page.headers["content-security-policy"]
        assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page.text)  # no external assets
        assert anonymous.get("/healthz").json()["status"] == "ok"


def test_chat_completions_honour_max_tokens_and_stop(server):
    counting = [{"role": "user", "content": "1, 2, 3, 4, 5, 6,"}]
    with server.client(headers=AUTH) as client:
        cut = client.post("/v1/chat/completions", json={"model": "any", "messages": counting, "max_tokens": 3})
        stopped = client.post("/v1/chat/completions", json={"messages": counting, "max_tokens": 40, "stop": [","]})
        model = client.get("/v1/models").json()["data"][0]["id"]
    assert cut.status_code == 200 and stopped.status_code == 200, (cut.text, stopped.text)
    cut, stopped = cut.json(), stopped.json()
    assert cut["object"] == "chat.completion" and cut["model"] == model
    assert cut["usage"]["completion_tokens"] == 3 and cut["choices"][0]["finish_reason"] == "length"
    text = stopped["choices"][0]["message"]["content"]
    assert text.strip() and "," not in text and stopped["choices"][0]["finish_reason"] == "stop"
    assert stopped["usage"]["completion_tokens"] < 40


def test_a_streamed_chat_sends_the_same_answer_piece_by_piece_to_the_openai_client(server):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0, timeout=300)
    counting = [{"role": "user", "content": "1, 2, 3, 4, 5, 6,"}]
    for settings in ({"max_tokens": 24}, {"max_tokens": 40, "stop": [" 9"]}):
        whole = client.chat.completions.create(model="any", messages=counting, **settings)
        chunks = list(client.chat.completions.create(model="any", messages=counting, stream=True,
                                                     stream_options={"include_usage": True}, **settings))
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(pieces) > 3  # piece by piece as the steps settle it, not one chunk at the end
        assert "".join(pieces) == whole.choices[0].message.content, settings
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
               [whole.choices[0].finish_reason]
        assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        assert chunks[0].choices[0].delta.role == "assistant" and {c.id for c in chunks} == {chunks[0].id}
    assert whole.choices[0].finish_reason == "stop" and " 9" not in whole.choices[0].message.content


def leave_a_long_stream_at_its_first_piece(client: httpx.Client, messages: list[dict]) -> None:
    """Ask for a streamed chat of 1000 tokens, go away at its first piece of text, and wait until the server has no
    request in flight (and a second more: a step under way when the client left may still end)."""
    with client.stream("POST", "/v1/chat/completions",
                       json={"messages": messages, "max_tokens": 1000, "stream": True}) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        lines = reply.iter_lines()
        while '"content": ""' in next(line for line in lines if line.startswith("data:")):
            pass  # the role chunk; leave at the first piece of text
    deadline = time.monotonic() + 60
    while client.get("/healthz").json()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)


def test_a_stream_its_client_leaves_stops_decoding_and_a_bad_one_is_refused_before_it_starts(server):
    counting = [{"role": "user", "content": "1, 2, 3, 4, 5, 6,"}]
    with server.client(headers=AUTH) as client:
        before = client.get("/healthz").json()
        leave_a_long_stream_at_its_first_piece(client, counting)
        now = client.get("/healthz").json()
        time.sleep(1.0)
        later = client.get("/healthz").json()
        too_long = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "go " * 40000}],
                                                             "stream": True})
    assert now["in_flight"] == 0 and now["failed"] == before["failed"] + 1  # the stream left early counts as failed
    assert later["decode_steps"] == now["decode_steps"]  # nothing decodes for it any more
    assert now["decode_steps"] - before["decode_steps"] < 100  # 1000 tokens need far more steps than it took
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["body", "messages"]


def test_a_chat_model_behind_a_server_streams_as_the_server_sends_it(server, run_dir):
    # A second serve in front of the first, which it calls as a chat model behind a server (OpenAI's API, the token
    # as the key in the URL): a streamed chat comes piece by piece as the first server sends it, and a client that
    # leaves stops the first server generating.
    api_base = server.url.replace("http://", f"http://key:{TOKEN}@") + "/v1"
    front = SmeltServe(str(run_dir), "--lm", "openai/gemma-3-270m", "--api-base", api_base, env=ENV)
    story = [{"role": "user", "content": "Tell me a story about a cat."}]
    counting = [{"role": "user", "content": "1, 2, 3, 4, 5, 6,"}]
    try:
        with front.client() as client:
            whole = client.post("/v1/chat/completions", json={"messages": story, "max_tokens": 24}).json()
            with client.stream("POST", "/v1/chat/completions",
                               json={"messages": story, "max_tokens": 24, "stream": True}) as reply:
                events = [json.loads(line[len("data: "):]) for line in reply.iter_lines()
                          if line.startswith("data: ") and line != "data: [DONE]"]
            leave_a_long_stream_at_its_first_piece(client, counting)
        with server.client(headers=AUTH) as back:
            now = back.get("/healthz").json()
            time.sleep(1.0)
            later = back.get("/healthz").json()
    finally:
        assert front.stop() == 0, front.output[-3000:]
    pieces = [e["choices"][0]["delta"].get("content") for e in events if e["choices"]]
    pieces = [piece for piece in pieces if piece]
    assert len(pieces) > 3 and "".join(pieces) == whole["choices"][0]["message"]["content"]
    assert events[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert now["in_flight"] == 0 and later["decode_steps"] == now["decode_steps"]  # nothing decodes for it any more
    assert TOKEN not in front.output


def test_request_log_holds_requests_and_never_the_token(server):
    question = f"What time does the pool open? ({secrets.token_hex(4)})"
    with server.client(headers=AUTH) as client:
        reply = client.post("/v1/predict", json={"document": "The pool opens at 10:00.", "question": question})
        assert client.post("/v1/predict", json={"document": "The pool opens at 10:00."}).status_code == 422
    assert reply.status_code == 200
    lines = [json.loads(line) for line in server.log.read_text(encoding="utf-8").splitlines()]
    [entry] = [line for line in lines if line.get("inputs", {}).get("question") == question]
    assert entry["route"] == "/v1/predict" and entry["status"] == 200 and entry["latency_s"] > 0
    assert entry["outputs"] == reply.json()["outputs"] and entry["usage"]["completion_tokens"] > 0
    assert any(line["status"] == 422 and "question" in line.get("error", "") for line in lines)
    assert TOKEN not in server.log.read_text(encoding="utf-8") and TOKEN not in server.output


def test_the_page_answers_in_headless_chromium(server, tmp_path):
    from devtools import Browser
    from test_html_report import chromium

    document = ("市立図書館の開館時間は平日が午前9時から午後7時まで、土日は午前10時から午後5時までです。"
                "毎月最終月曜日は休館日です。")
    question = "毎月の休館日はいつですか。"
    browser = Browser(chromium(), tmp_path / "profile")
    try:
        browser.navigate(server.url + "/")
        browser.wait_for("!document.getElementById('token-form').hidden")  # the API needs the token
        browser.type_into("#token", TOKEN)
        browser.click("#token-form button")
        browser.wait_for("document.querySelectorAll('#fields textarea').length === 2")
        assert browser.evaluate("document.getElementById('field-document').rows") == 10  # long text: a tall box
        browser.type_into("#field-document", document)
        browser.type_into("#field-question", question)
        browser.click("#submit")
        shown = browser.wait_for("(document.querySelector('#answer dd.output') || {}).textContent", timeout=240)
        latency = browser.evaluate("document.getElementById('latency').textContent")
        out = Path(os.environ.get("SMELT_TEST_OUTPUT") or tmp_path)
        out.mkdir(parents=True, exist_ok=True)
        browser.screenshot(out / "serve-page.png")
        errors = browser.console_errors()
    finally:
        browser.close()
    assert not errors, errors
    assert re.search(r"\d+\.\d\d s on the server", latency), latency
    with server.client(headers=AUTH) as client:
        expected = client.post("/v1/predict", json={"document": document, "question": question}).json()
    assert shown == expected["outputs"]["answer"]  # what the page shows is the program's answer to what was typed
    assert (out / "serve-page.png").stat().st_size > 10_000


def test_sigterm_finishes_requests_in_flight_and_refuses_new_ones(run_dir):
    server = SmeltServe(str(run_dir), "--threads", "2", env=ENV)
    replies = []
    with server.client() as client:
        long_chat = {"messages": [{"role": "user", "content": "Once upon a time"}], "max_tokens": 120}
        talker = threading.Thread(target=lambda: replies.append(client.post("/v1/chat/completions", json=long_chat)))
        talker.start()
        deadline = time.monotonic() + 60
        while client.get("/healthz").json()["in_flight"] < 1:
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        try:  # a new request: refused, by the closed port or by the draining server
            late = httpx.get(server.url + "/healthz", timeout=5)
            assert late.status_code == 503 or late.json()["status"] == "draining"
        except httpx.TransportError:
            pass
        talker.join(timeout=240)
    assert server.process.wait(timeout=120) == 0, server.output[-3000:]
    [reply] = replies
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
    assert "stopped: 1 requests answered" in server.output
    assert "Traceback" not in server.output


def test_the_model_is_warmed_up_before_the_server_says_it_is_ready(run_dir):
    """Before its ready line the server has run the program's prompt (inputs empty) for one token: the engine's first
    step is done, and the first request finds the prompt it shares with every request (system message, demos) in
    the prefix cache."""
    server = SmeltServe(str(run_dir), "--threads", "2", env=ENV)
    try:
        with server.client() as client:
            ready = client.get("/healthz").json()
            reply = client.post("/v1/predict", json=shipped_inputs(1)[0])
            first = client.get("/healthz").json()
    finally:
        assert server.stop() == 0, server.output[-3000:]
    assert ready["answered"] == 0 and ready["decode_steps"] >= 1 and ready["prompt_pass_s"] > 0
    assert reply.status_code == 200, reply.text
    # Two prompts were looked up: the warm-up's (all new) and the first request's, most of which it shares with the
    # warm-up's. Without the warm-up the first request is the only one, and it finds nothing in the cache (0).
    assert first["prefix_cache_hit_rate"] > 0.25, first
    assert "warmed up in" in server.output


def one_line_error(*args: str, env: dict | None = None) -> str:
    return serve_error_line(*args, env=env or ENV)


def test_another_interface_needs_a_token(run_dir):
    line = one_line_error(str(run_dir), "--host", "0.0.0.0")
    assert "--host 0.0.0.0" in line and "--token-env" in line
    unset = one_line_error(str(run_dir), "--host", "0.0.0.0", "--token-env", "SERVE_TEST_NO_SUCH_VARIABLE")
    assert "$SERVE_TEST_NO_SUCH_VARIABLE is not set" in unset
    short = one_line_error(str(run_dir), "--token-env", "SHORT_TOKEN", env={**ENV, "SHORT_TOKEN": "abc"})
    assert "shorter than 16" in short and "abc" not in short
    assert "no such directory" in one_line_error(str(run_dir / "missing"))


def test_a_request_past_the_timeout_is_504_and_draining_is_503():
    import asyncio
    from types import SimpleNamespace

    from smelt.lm.call_scope import current_scope
    from smelt.serving.prediction import RequestFailed
    from smelt.serving.service import ServedProgram

    served = ServedProgram(SimpleNamespace(lm=SimpleNamespace(engine=None)), threads=2, timeout=0.2)
    with pytest.raises(RequestFailed) as slow:
        asyncio.run(served.call(lambda: time.sleep(2)))
    assert slow.value.status == 504 and "--timeout" in slow.value.message
    seen = {}

    def waits_on_the_model():  # as a program blocked in the engine: the scope it runs in is what the engine reads
        scope = current_scope()
        deadline = time.monotonic() + 5
        while not scope.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["cancelled"] = scope.cancelled

    with pytest.raises(RequestFailed):
        asyncio.run(served.call(waits_on_the_model))
    deadline = time.monotonic() + 5
    while "cancelled" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == {"cancelled": True}  # the 504 cancelled the request's model calls too
    assert asyncio.run(served.call(lambda: {"usage": {"completion_tokens": 3}})) == {"usage": {"completion_tokens": 3}}
    served.stop_accepting()
    with pytest.raises(RequestFailed) as late:
        asyncio.run(served.call(lambda: {}))
    assert late.value.status == 503
    served.close()
    assert served.stats() == {"in_flight": 0, "answered": 1, "failed": 3, "completion_tokens": 3}


def test_a_stream_past_the_timeout_ends_with_an_error_event_and_cancels_its_calls():
    import asyncio
    from types import SimpleNamespace

    from dspy.lm15 import StreamDeltaEvent, StreamStartEvent, TextDelta

    from smelt.lm.call_scope import current_scope
    from smelt.serving.chat import sse_chunks
    from smelt.serving.service import ServedProgram

    loaded = SimpleNamespace(lm=SimpleNamespace(engine=None, spec=SimpleNamespace(raw="gemma-3-270m")))
    served = ServedProgram(loaded, threads=2, timeout=0.5)
    seen = {}

    def start():  # a model that sends one piece, then hangs until its call is cancelled
        def events():
            yield StreamStartEvent(model="m")
            yield StreamDeltaEvent(delta=TextDelta(text="5,"))
            scope, deadline = current_scope(), time.monotonic() + 5
            while not scope.cancelled and time.monotonic() < deadline:
                time.sleep(0.01)
            seen["cancelled"] = scope.cancelled

        return events()

    async def consume() -> list[str]:
        stream = await served.open_stream(start)
        finished = lambda text, usage, error: seen.update(text=text, error=error)  # noqa: E731
        return [chunk async for chunk in sse_chunks(stream, loaded, "m", False, finished)]

    chunks = asyncio.run(consume())
    deadline = time.monotonic() + 5
    while "cancelled" not in seen and time.monotonic() < deadline:
        time.sleep(0.01)
    events = [json.loads(chunk[len("data: "):]) for chunk in chunks]
    assert [e["choices"][0]["delta"] for e in events[:2]] == [{"role": "assistant", "content": ""}, {"content": "5,"}]
    assert events[-1]["error"]["type"] == "timeout" and "--timeout" in events[-1]["error"]["message"]
    assert "data: [DONE]\n\n" not in chunks and seen["text"] == "5," and seen["cancelled"] is True
    served.close()
    assert served.stats() == {"in_flight": 0, "answered": 0, "failed": 1, "completion_tokens": 0}


def test_the_passages_of_a_program_that_retrieves_are_split_by_document():
    import dspy

    from smelt.programs.registry import get_task
    from smelt.serving.prediction import retrieved_passages

    text, ids = get_task("rag_qa").program().retrieve("When does the Kitanodai Branch Library open?")
    assert len(ids) == 3 and len(set(ids)) < len(ids)  # the same document twice: each passage in its place
    passages = retrieved_passages(dspy.Prediction(passages=text, retrieved=ids, citations=ids[0]))
    assert [p["id"] for p in passages] == ids
    assert "\n".join(f"[{p['id']}] {p['text']}" for p in passages) == text  # nothing lost, nothing cut wrongly
    assert [p["cited"] for p in passages] == [i == ids[0] for i in ids]
    assert retrieved_passages(dspy.Prediction(answer="9:30")) is None  # doc_qa: no passages to show


def test_the_schemas_come_from_the_task_fields():
    from pydantic import ValidationError

    from smelt.programs.registry import get_task
    from smelt.serving.schema import request_model, response_model

    task = get_task(str(ROOT / "examples" / "inquiry_routing.toml"))  # a task file: no Python
    model = request_model(task)
    schema = model.model_json_schema()
    assert schema["required"] == ["inquiry"] and schema["additionalProperties"] is False
    assert schema["properties"]["inquiry"]["description"] == "a resident's message to the city, in Japanese or English"
    assert schema["properties"]["inquiry"]["x-long-text"]  # a message: a tall box on the page
    with pytest.raises(ValidationError) as bad:
        model(inquiry="", topic="roads")
    assert {error["loc"][0] for error in bad.value.errors()} == {"inquiry", "topic"}
    outputs = response_model(task).model_json_schema()["$defs"]["InquiryRoutingOutputs"]["properties"]
    assert list(outputs) == ["department"] and "department" in outputs["department"]["description"]
