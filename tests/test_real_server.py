"""smelt against a real OpenAI-compatible server process: ``transformers serve`` on the embedded model's weights.

The base model has no chat template, so it is named ``text-completion-openai/<model>``: smelt sends the server's
completion endpoint the very prompt its in-process engine builds, and gets the same answers. Every command that
takes a model runs against it (compile, eval with a judge, run, distill with a server teacher, a 2-trial sweep);
the run's API base is reused without being given again; a password in the URL is never written or printed; and
``--threads 8`` keeps several requests in flight at once (counted by a relay in front of the server). The replies
are streamed: a cancelled call closes its connection and the server stops generating, and ``serve`` streams a chat
from the server as the tokens come."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smelt.lm.embedded import ensure_embedded_model
from tests.real_server import SmeltServe, TransformersServer

CLI = Path(__file__).resolve().parents[1] / "cli.py"
PASSWORD = "s3cret-pa55"
TINY = ["--max-dev", "2", "--max-test", "2", "--latency-sample", "0"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = TransformersServer(ensure_embedded_model(), tmp_path_factory.mktemp("server") / "server.log")
    yield started
    started.stop()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


def smelt(runs: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(CLI), *args, "--runs-root", str(runs)], capture_output=True,
                            text=True, timeout=900)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def spec(server) -> str:
    return f"text-completion-openai/{server.model}"


def predictions(run: Path, split: str) -> dict:
    return {r["id"]: r["prediction"] for r in map(json.loads, (run / "eval" / f"{split}.jsonl").open())}


def newest(runs: Path, command: str) -> Path:
    return sorted(runs.glob(f"*/*-{command}"))[-1]


@pytest.fixture(scope="module")
def server_compile(server, runs):
    said = smelt(runs, "compile", "doc_qa", "--lm", spec(server), "--api-base", server.url, "--optimizer", "none",
                 "--threads", "8", "--no-cache", *TINY)
    return newest(runs, "compile"), said


def test_compile_on_the_server_gives_the_in_process_answers_with_requests_in_flight_together(server, runs,
                                                                                           server_compile):
    run, said = server_compile
    assert server.proxy.most_in_flight >= 2  # --threads 8: the server had several requests at once
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["models"]["program"]["api_base"] == server.url
    # transformers serve takes no answer pattern: its answers are unconstrained, said once; so are these in-process.
    assert said.stderr.count("answers are not constrained (the server at") == 1, said.stderr[-2000:]
    smelt(runs, "compile", "doc_qa", "--optimizer", "none", "--threads", "8", "--no-cache", "--no-constrain",
          *TINY)  # in-process
    in_process = newest(runs, "compile")
    for split in ("baseline.dev", "baseline.test"):
        assert predictions(run, split) == predictions(in_process, split)  # the same prompt on the same weights


def test_eval_and_run_reuse_the_runs_api_base_when_told(server, runs, server_compile):
    run, _ = server_compile
    before = server.proxy.requests
    said = smelt(runs, "eval", "--program", str(run), "--split", "dev", "--max-dev", "2", "--no-cache",
                 "--threads", "4", "--api-base", "recorded")
    assert f"the run's API base {server.url}" in said.stderr
    answered = subprocess.run([sys.executable, str(CLI), "run", "--program", str(run), "--api-base", "recorded", "-i",
                               "document=The library opens at 9:00 and closes at 19:00.", "-i",
                               "question=When does the library open?"],
                              capture_output=True, text=True, timeout=600)
    assert answered.returncode == 0 and answered.stdout.strip(), answered.stderr[-2000:]
    assert f"the run's API base {server.url}" in answered.stderr
    assert server.proxy.requests >= before + 3  # 2 dev examples and one answer, all on the server


def test_a_server_judge_with_a_password_in_its_url_never_writes_or_prints_it(server, runs, server_compile):
    run, _ = server_compile
    with_password = server.url.replace("http://", f"http://smelt:{PASSWORD}@")
    said = smelt(runs, "eval", "--program", str(run), "--metric", "judge", "--judge", spec(server), "--api-base",
                 with_password, "--split", "dev", "--max-dev", "2", "--no-cache", "--threads", "4")
    evaluated = newest(runs, "eval")
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["metric"] == "judge"
    assert len((evaluated / "eval" / "dev.jsonl").read_text().splitlines()) == 2  # each judged on the server
    assert PASSWORD not in said.stdout + said.stderr
    for path in runs.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_distill_with_a_server_teacher_and_a_two_trial_sweep(server, runs):
    smelt(runs, "distill", "doc_qa", "--student", "gemma-3-270m", "--teacher", spec(server), "--api-base", server.url,
          "--max-train", "4", "--epochs", "1", "--batch-size", "2", "--lora-r", "4", "--threads", "4", *TINY)
    distilled = newest(runs, "distill")
    manifest = json.loads((distilled / "manifest.json").read_text())
    assert manifest["models"]["teacher"]["api_base"] == server.url
    assert json.loads((distilled / "summary.json").read_text())["sft_examples"] == 4

    smelt(runs, "sweep", "doc_qa", "--trials", "2", "--lm", spec(server), "--api-base", server.url, "--threads", "4",
          "--max-train", "4", *TINY)
    swept = newest(runs, "sweep")
    summary = json.loads((swept / "summary.json").read_text())
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 2
    assert all(scored["examples"] == 2 for scored in summary["test"].values())
    trial = json.loads(next(swept.glob("trials/*/manifest.json")).read_text())
    assert trial["models"]["program"]["api_base"] == server.url


def cpu_seconds(pid: int) -> float:
    """CPU time a process and the processes it started have used so far (user + system, all their threads)."""
    stats = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        stats[int(path.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # parent, ticks
    tree, ticks = {pid}, 0
    for _ in range(4):  # children, grandchildren, ...
        tree |= {child for child, (parent, _) in stats.items() if parent in tree}
    ticks = sum(stats[member][1] for member in tree if member in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def test_a_cancelled_call_closes_its_stream_and_the_server_stops_generating(server):
    # serve cancels the model calls of a request past --timeout; on a server model that closes the connection.
    from dspy.lm15 import Config, Message, Request

    from smelt.lm import lm_for_spec
    from smelt.lm.call_scope import CallCancelled, CallScope

    engine = lm_for_spec(spec(server), api_base=server.url).lm.engine
    endless = Request(model="m", messages=(Message.user("1, 2, 3, 4, 5, 6,"),),
                      config=Config(max_tokens=2000, temperature=0.0))
    scope, outcome = CallScope(), {}

    def call() -> None:
        with scope.active():
            try:
                outcome["result"] = engine.complete(endless)
            except CallCancelled as exc:
                outcome["result"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(2)
    before = cpu_seconds(server.process.pid)
    time.sleep(3)
    generating = cpu_seconds(server.process.pid) - before
    scope.cancel()
    thread.join(timeout=60)
    assert isinstance(outcome.get("result"), CallCancelled), outcome
    time.sleep(1)  # the server notices the closed connection at its next token
    before = cpu_seconds(server.process.pid)
    time.sleep(3)
    after_cancel = cpu_seconds(server.process.pid) - before
    assert generating > 1.0  # the measure can tell: busy while it generated
    assert after_cancel < 0.5 * generating  # and then idle: not writing 2000 tokens nobody reads


def test_serve_streams_a_chat_from_the_server_as_its_tokens_come(server, server_compile):
    run, _ = server_compile
    served = SmeltServe(str(run), "--threads", "2", "--api-base", "recorded")
    try:
        chat = {"messages": [{"role": "user", "content": "1, 2, 3, 4, 5, 6,"}], "max_tokens": 12}
        with served.client() as client:
            whole = client.post("/v1/chat/completions", json=chat).json()
            with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as reply:
                events = [json.loads(line[len("data: "):]) for line in reply.iter_lines()
                          if line.startswith("data: ") and line != "data: [DONE]"]
    finally:
        assert served.stop() == 0, served.output[-2000:]
    pieces = [e["choices"][0]["delta"].get("content") for e in events if e["choices"]]
    pieces = [piece for piece in pieces if piece]
    assert len(pieces) > 3 and "".join(pieces) == whole["choices"][0]["message"]["content"]
    assert f"the run's API base {server.url}" in served.output  # served from the server the run recorded
