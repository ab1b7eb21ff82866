"""A task file's ``pattern`` is data: one that backtracks without end never hangs smelt.

``(a|aa)+$`` on forty a's and a "!" backtracks for longer than anyone waits (Python's ``re`` holds the GIL all the
while: no Ctrl-C, no other thread). Through the real CLI and a real ``serve`` process, with the program's model a
real OpenAI-compatible server on loopback that always gives that answer: ``compile`` finishes with every answer
malformed, ``run`` prints it with its warning, and ``serve`` answers it as malformed while ``/healthz`` keeps
answering and SIGTERM stops it.
"""

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from chat_stub import ChatStub, chat_reply
from mistakes import CLI, ENV

from tests.real_server import SmeltServe

EVIL = "a" * 40 + "!"
PATTERN = "(a|aa)+$"  # exponential for re and for regex alike; (a+)+$ regex happens to match at once
MODEL_ENV = {**ENV, "OPENAI_API_KEY": "sk-local-test"}


@pytest.fixture(scope="module")
def api_base():
    with ChatStub(chat_reply({"code": EVIL})) as stub:
        yield stub.url


@pytest.fixture(scope="module")
def task_file(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("patterns")
    rows = [{"id": f"r{i}", "request": f"code number {i}", "code": "a" * (i + 1)} for i in range(10)]
    (folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = folder / "codes.toml"
    path.write_text(f'signature = "request -> code"\nmetric = "em"\n[fields.code]\npattern = {json.dumps(PATTERN)}\n'
                    '[data]\nfile = "rows.jsonl"\n', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def compiled(task_file, api_base, tmp_path_factory) -> dict:
    """`compile` of the task on the model that always answers EVIL: its run directory, and how long it took."""
    runs = tmp_path_factory.mktemp("runs")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(CLI), "compile", str(task_file), "--lm", "openai/local-model", "--api-base", api_base,
         "--optimizer", "none", "--latency-sample", "0", "--no-cache", "--runs-root", str(runs)],
        cwd=runs, env=MODEL_ENV, capture_output=True, text=True, timeout=240)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(re.search(r"run directory: (\S+)", result.stdout).group(1))
    return {"run_dir": run_dir, "seconds": seconds, "stderr": result.stderr}


def test_compile_finishes_with_every_answer_malformed(compiled):
    records = [json.loads(line) for line in (compiled["run_dir"] / "eval" / "test.jsonl").read_text().splitlines()]
    assert records and all(r["malformed"] == ["code"] and r["score"] == 0.0 for r in records)
    summary = json.loads((compiled["run_dir"] / "summary.json").read_text())
    for scores in (summary["baseline"], summary["compiled"]):
        assert scores["test"]["malformed"] == scores["test"]["examples"] and scores["test"]["score"] == 0.0
    assert "Traceback" not in compiled["stderr"]
    assert compiled["seconds"] < 120, compiled["seconds"]  # the process start and imports, mostly


def test_run_prints_the_answer_and_warns_it_is_malformed(compiled, api_base, tmp_path):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(CLI), "run", "--program", str(compiled["run_dir"]), "-i",
         f"request=code {uuid.uuid4().hex[:8]}", "--api-base", api_base],
        cwd=tmp_path, env=MODEL_ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == EVIL
    assert "answer field 'code' is not a pattern" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 60


def test_serve_answers_malformed_while_healthz_answers_and_sigterm_stops_it(compiled, api_base):
    server = SmeltServe(str(compiled["run_dir"]), "--api-base", api_base, "--threads", "4", "--timeout", "20",
                        env=MODEL_ENV)
    try:
        health_s, replies = [], []
        with server.client() as client, ThreadPoolExecutor(4) as pool:
            asked = [pool.submit(client.post, "/v1/predict", json={"request": f"code {uuid.uuid4().hex[:8]}"})
                     for _ in range(4)]
            while not all(future.done() for future in asked) or len(health_s) < 5:
                started = time.monotonic()
                health = httpx.get(server.url + "/healthz", timeout=5)
                health_s.append(time.monotonic() - started)
                assert health.status_code == 200 and health.json()["status"] == "ok"
                time.sleep(0.02)
            replies = [future.result() for future in asked]
        for reply in replies:
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["outputs"]["code"] == EVIL and body["malformed"] == ["code"]
            assert body["latency_s"] < 10, body
        assert max(health_s) < 1.0, health_s
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0, server.output[-3000:]
        assert "stopped: 4 requests answered" in server.output and "Traceback" not in server.output
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=30)
