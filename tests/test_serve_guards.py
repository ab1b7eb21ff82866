"""`serve`'s guards through the real server process: the Host header without a token (DNS rebinding), the bearer
scheme in any case, `--log` never inside a run and a log that cannot be written, a port already taken, a timeout
that is not a number, a kept-alive connection after SIGTERM, and the score the try-it page shows.

The runs are data written here (a compile and a distill run of doc_qa on `openai/local-model`), answered by a small
OpenAI-compatible server on loopback, so no model loads: each serve starts in seconds."""

import dataclasses
import http.client
import json
import math
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from chat_stub import ChatStub
from mistakes import ENV, snapshot

from tests.real_server import SmeltServe, free_port, serve_error_line

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "guards-test-" + secrets.token_urlsafe(16)
ANSWER = "[[ ## answer ## ]]\n9:00\n\n[[ ## completed ## ]]"
QUESTION = {"document": "The pool opens at 9:00.", "question": "When does the pool open?"}
SLOW = {"document": "The pool opens at 9:00.", "question": "When does the slow pool open?"}  # 3 s to answer


@pytest.fixture(scope="module")
def model_base():
    """A chat model that always answers 9:00; a prompt holding "slow pool" takes 3 s."""
    with ChatStub(ANSWER, delay=lambda body: 3 if b"slow pool" in body else 0) as stub:
        yield stub.url


def _run(runs: Path, command: str, summary: dict) -> Path:
    """A finished doc_qa run of ``command`` on openai/local-model, as the command writes it (manifest, program.json,
    ``summary``)."""
    from smelt.commands.compile import CompileOptions
    from smelt.files import write_json
    from smelt.lifecycle import build_manifest, new_run_dir
    from smelt.programs.registry import get_task

    task = get_task("doc_qa")
    run_dir = new_run_dir(task.name, command, runs)
    options = dataclasses.asdict(CompileOptions(task="doc_qa", lm="openai/local-model", runs_root=str(runs)))
    write_json(run_dir / "manifest.json", build_manifest(
        command=command, task=task, options=options, seed=0, models={"program": {"spec": "openai/local-model"}},
        data_sources={}, program_options=task.default_options(), extra={"metric": "f1"}))
    task.program().save(str(run_dir / "program.json"))
    (run_dir / "summary.json").write_text(json.dumps({"task": "doc_qa", "command": command, "metric": "f1",
                                                      **summary}), encoding="utf-8")  # NaN as JSON allows it
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("runs")
    compiled = _run(root, "compile", {"baseline": {"test": {"score": 0.25}}, "compiled": {"test": {"score": 0.5}}})
    columns = {"teacher": {"score": 0.172}, "student (no adapter)": {"score": math.nan},
               "distilled student": {"score": 0.412}}  # as distill writes them (its summary's "test")
    distilled = _run(root, "distill", {"student": "gemma-3-270m", "training": {"epochs": 1}, "test": columns})
    return {"root": root, "compile": compiled, "distill": distilled}


def _env() -> dict:
    return {**ENV, "OPENAI_API_KEY": "sk-local-test", "SERVE_GUARDS_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def open_server(runs, model_base):
    """serve without a token (loopback), its --log on a full disk (/dev/full)."""
    served = SmeltServe(str(runs["compile"]), "--api-base", model_base, "--log", "/dev/full", env=_env())
    yield served
    assert served.stop() == 0, served.output[-3000:]


def one_line_error(*args: str) -> str:
    return serve_error_line(*args, env=_env())


def test_without_a_token_only_a_host_naming_this_server_is_answered(open_server):
    port = open_server.url.rsplit(":", 1)[1]
    with open_server.client() as client:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LocalHost:{port}"):
            reply = client.post("/v1/predict", json=QUESTION, headers={"Host": host})
            assert reply.status_code == 200 and reply.json()["outputs"]["answer"] == "9:00", (host, reply.text)
        for host in ("rebind.attacker.example", f"rebind.attacker.example:{port}", "127.0.0.1", "localhost",
                     "127.0.0.1:1", f"localhost.:{port}", f"127.0.0.1:{port}.evil.example", ""):
            for method, path in (("POST", "/v1/predict"), ("GET", "/v1/program"), ("GET", "/healthz"),
                                 ("GET", "/")):
                reply = client.request(method, path, json=QUESTION if method == "POST" else None,
                                       headers={"Host": host})
                assert reply.status_code == 421, (host, path, reply.status_code)
                assert reply.json()["error"]["type"] == "misdirected_request"
                assert "--token-env" in reply.json()["error"]["message"]
        assert client.get("/healthz").json()["answered"] == 4  # the refused requests never reached the program


def test_a_log_that_cannot_be_written_is_one_warning_and_requests_are_answered(open_server):
    with open_server.client() as client:
        for _ in range(3):
            assert client.post("/v1/predict", json=QUESTION).status_code == 200
    warnings = [line for line in open_server.lines if "--log" in line]
    assert len(warnings) == 1 and "/dev/full" in warnings[0] and "No space left" in warnings[0], warnings
    assert "Traceback" not in open_server.output


def test_a_second_serve_on_the_same_port_is_one_line(open_server, runs, model_base):
    port = open_server.url.rsplit(":", 1)[1]
    line = one_line_error(str(runs["compile"]), "--api-base", model_base, "--port", port)
    assert f"--port {port}" in line and "already in use" in line and "--port N" in line
    with open_server.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"  # the first one is undisturbed


def test_two_serves_started_together_on_one_port_leave_one_serving_and_one_line(runs, model_base):
    port = str(free_port())
    args = [sys.executable, str(ROOT / "cli.py"), "serve", str(runs["compile"]), "--api-base", model_base,
            "--port", port]
    both = [subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        while all(p.poll() is None for p in both):
            assert time.monotonic() < deadline, "neither serve stopped"
            time.sleep(0.2)
        [refused] = [p for p in both if p.poll() is not None]
        [serving] = [p for p in both if p is not refused]
        stderr = refused.stderr.read()
        assert refused.returncode == 2 and "Traceback" not in stderr, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and f"--port {port}" in lines[0], lines
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json=QUESTION, timeout=60)
        assert reply.status_code == 200, reply.text
    finally:
        for process in both:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=60) == 0


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e999"])
def test_a_timeout_that_is_not_a_finite_number_is_one_line(runs, value):
    line = one_line_error(str(runs["compile"]), "--timeout", value)
    assert "--timeout" in line and "finite number of seconds" in line


def test_with_a_token_any_host_and_the_bearer_scheme_in_any_case(runs, model_base):
    served = SmeltServe(str(runs["compile"]), "--api-base", model_base, "--token-env", "SERVE_GUARDS_TOKEN",
                        env=_env())
    try:
        with served.client() as client:
            for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
                reply = client.post("/v1/predict", json=QUESTION, headers={"Authorization": f"{scheme} {TOKEN}",
                                                                          "Host": "api.example:443"})
                assert reply.status_code == 200, (scheme, reply.text)
            for given in (f"Basic {TOKEN}", f"Bearer{TOKEN}", TOKEN, f"Bearer {TOKEN}x", "Bearer", ""):
                reply = client.get("/v1/program", headers={"Authorization": given})
                assert reply.status_code == 401, given
    finally:
        assert served.stop() == 0, served.output[-3000:]


def test_a_log_inside_a_run_directory_is_refused_and_the_runs_are_untouched(runs, tmp_path):
    compiled, distilled = runs["compile"], runs["distill"]
    before = snapshot(runs["root"])
    link = tmp_path / "link.jsonl"
    link.symlink_to(compiled / "program.json")
    cases = {str(compiled / "program.json"): compiled, str(compiled / "eval" / "requests.jsonl"): compiled,
             str(distilled / "serve.jsonl"): distilled, str(link): compiled}
    for log, run in cases.items():
        line = one_line_error(str(compiled), "--log", log)
        assert f"--log {log}" in line and f"inside run {run}" in line and "--log serve.jsonl" in line, line
    assert snapshot(runs["root"]) == before  # nothing appended, nothing created


def test_after_sigterm_a_kept_alive_connection_gets_the_503(runs, model_base):
    served = SmeltServe(str(runs["compile"]), "--api-base", model_base, "--threads", "2", env=_env())
    host, port = served.url.removeprefix("http://").split(":")
    slow = []
    try:
        kept = http.client.HTTPConnection(host, int(port), timeout=60)
        kept.request("POST", "/v1/predict", json.dumps(QUESTION), {"Content-Type": "application/json"})
        first = kept.getresponse()
        assert first.status == 200 and json.loads(first.read())["outputs"]["answer"] == "9:00"
        talker = threading.Thread(target=lambda: slow.append(httpx.post(served.url + "/v1/predict", json=SLOW,
                                                                        timeout=60)))
        talker.start()
        with served.client() as client:
            deadline = time.monotonic() + 30
            while client.get("/healthz").json()["in_flight"] < 1:
                assert time.monotonic() < deadline, "the slow request never started"
                time.sleep(0.05)
        served.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # past uvicorn's next tick: it has begun its stop
        with pytest.raises(httpx.ConnectError):  # the port is closed to new connections
            httpx.get(served.url + "/healthz", timeout=5)
        kept.request("POST", "/v1/predict", json.dumps(QUESTION), {"Content-Type": "application/json"})
        late = kept.getresponse()
        body = json.loads(late.read())
        assert late.status == 503 and body["error"]["type"] == "unavailable", body
        assert late.getheader("connection") == "close"
        kept.close()
        talker.join(timeout=60)
    finally:
        served.stop()
    assert served.process.returncode == 0, served.output[-3000:]
    [reply] = slow
    assert reply.status_code == 200 and reply.json()["outputs"]["answer"] == "9:00"  # in flight: it finished
    assert "stopped: 2 requests answered, 1 failed" in served.output and "Traceback" not in served.output


def test_the_page_and_program_show_the_distilled_students_score(runs, model_base, tmp_path):
    served = SmeltServe(str(runs["distill"]), "--api-base", model_base, env=_env())
    try:
        with served.client() as client:
            reply = client.get("/v1/program")
        assert reply.status_code == 200, reply.text
        measured = reply.json()["measured"]
        assert measured["served"] == {"column": "distilled student", "split": "test", "score": 0.412}
        assert measured["scores"] == {"teacher": {"test": 0.172}, "distilled student": {"test": 0.412}}  # no NaN
        try:
            from devtools import Browser
            from test_html_report import chromium

            executable = chromium()
        except pytest.skip.Exception:
            return  # no browser here: /v1/program above is what the page shows
        browser = Browser(executable, tmp_path / "profile")
        try:
            browser.navigate(served.url + "/")
            shown = browser.wait_for("(document.getElementById('program-meta').textContent.match(/measured.*/) "
                                     "|| [])[0]")
        finally:
            browser.close()
        assert shown == "measured f1: distilled student test 0.412", shown
    finally:
        assert served.stop() == 0, served.output[-3000:]


def test_measured_scores_name_the_served_column_of_each_command(tmp_path):
    from smelt.serving.loading import measured_scores

    def scores(summary: dict) -> dict:
        (tmp_path / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
        return measured_scores(tmp_path)

    compiled = scores({"command": "compile", "metric": "f1",
                       "baseline": {"dev": {"score": 0.1}, "test": {"score": 0.2}},
                       "compiled": {"dev": {"score": 0.3}, "test": {"score": math.inf}}})
    assert compiled["scores"] == {"baseline": {"test": 0.2, "dev": 0.1}, "compiled": {"dev": 0.3}}
    assert compiled["served"] == {"column": "compiled", "split": "dev", "score": 0.3}
    sweep = scores({"command": "sweep", "metric": "f1", "best": [{"number": 3}], "default": {"number": 0},
                    "test": {"trial 3 (best)": {"score": 0.6}, "trial 0 (default)": {"score": 0.4}}})
    assert sweep["served"] == {"column": "trial 3 (best)", "split": "test", "score": 0.6}
    same = scores({"command": "sweep", "metric": "f1", "best": [{"number": 0}],
                   "test": {"trial 0 (best = default)": {"score": 0.4}}})
    assert same["served"]["column"] == "trial 0 (best = default)"
    assert scores({"command": "compile", "metric": math.nan, "compiled": {"test": {"score": True}}}) == {}
    assert "served" not in scores({"command": "eval", "metric": "f1", "compiled": {"test": {"score": 0.5}}})
