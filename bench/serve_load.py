"""Throughput of ``serve`` under concurrent clients, against one client at a time and against ``run`` called once per
input.

One ``python cli.py serve RUN --threads T`` process answers the first N questions of the doc_qa test split (each
with its whole document, as ``run`` and ``eval`` take it) sent over HTTP by C clients at once (C = 1, 4, 8, 16 by
default): each client sends its next question as soon as its last one is answered, on a connection it keeps open.
Every C makes R passes (--rounds), interleaved with the other counts' (1, 4, 8, 16, then 16, 8, 4, 1, ...), so that
load from other work on a shared machine falls on every count alike. For each C: the median requests/s of its
passes, p50 and p95 latency of its requests, and the ratio to C = 1 (the anchor: one client at a time, on the same
server, in the same run). The server is warmed up with one untimed pass first. Its prefix cache is kept small
(--prefix-cache-mb): it holds the prompts' shared part (system message, demos), but a question asked again a pass
later is computed again, as a new question would be. Then ``python cli.py run`` answers the first K questions, one
process per input as a script would call it, model load included.

Answers are compared: every C against C = 1, and each with the prediction the run's own evaluation recorded for
the same question (``RUN/eval/test.jsonl``, where it has one), and ``run``'s with the server's.

    python -m bench.serve_load --program runs/doc_qa/<compile or distill run> [--n 16] [--clients 1,4,8,16]
                               [--threads 16] [--rounds 3] [--run-calls 2] [--json FILE]
"""

import argparse
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(ROOT / "cli.py")]


def doc_qa_questions(n: int) -> list[dict]:
    """The first n doc_qa test questions: id, and the inputs (document, question)."""
    from smelt.programs.registry import get_task

    examples = get_task("doc_qa").shipped_data().test
    if n > len(examples):
        raise SystemExit(f"the doc_qa test split has {len(examples)} questions; ask for --n {len(examples)} or fewer")
    return [{"id": e.id, "inputs": {"document": e.document, "question": e.question}} for e in examples[:n]]


def start_server(program: Path, threads: int, prefix_cache_mb: float) -> tuple[subprocess.Popen, str]:
    environment = {**os.environ, "SMELT_PREFIX_CACHE_MB": f"{prefix_cache_mb:g}"}
    process = subprocess.Popen([*CLI, "serve", str(program), "--port", "0", "--threads", str(threads)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    lines = []
    for line in process.stdout:
        lines.append(line)
        found = re.search(r"\[smelt\] serving .* on (http://127\.0\.0\.1:\d+)/", line)
        if found:
            threading.Thread(target=process.stdout.read, daemon=True).start()  # drained, so the server never blocks
            return process, found.group(1)
    raise SystemExit("serve did not start:\n" + "".join(lines))


def load_pass(url: str, questions: list[dict], clients: int) -> dict:
    """Every question once, ``clients`` at a time; requests/s, the latencies, answers by id.

    Each client keeps one HTTP connection open, as an application would: making a new ``httpx`` client per request
    costs this process about 30 ms of CPU (its TLS context), which on a 2-core machine the server would share."""
    latencies, answers = [], {}
    connections: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(clients):
        connections.put(httpx.Client(timeout=600))

    def ask(question: dict) -> None:
        connection = connections.get()  # one per client at a time: at most ``clients`` requests run together
        try:
            started = time.perf_counter()
            reply = connection.post(f"{url}/v1/predict", json=question["inputs"])
            reply.raise_for_status()
            latencies.append(time.perf_counter() - started)
            answers[question["id"]] = reply.json()["outputs"]["answer"]
        finally:
            connections.put(connection)

    engine_before = httpx.get(f"{url}/healthz").json()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(ask, questions))
    seconds = time.perf_counter() - started
    engine_after = httpx.get(f"{url}/healthz").json()
    for _ in range(clients):
        connections.get().close()
    engine = {key: engine_after.get(key, 0) - engine_before.get(key, 0)
              for key in ("prompt_pass_s", "decode_step_s", "decode_steps")}
    return {"rps": len(questions) / seconds, "seconds": seconds, **engine, "latencies": latencies, "answers": answers}


def interleaved_passes(url: str, questions: list[dict], clients: list[int], rounds: int) -> list[dict]:
    """Each client count's passes, made in rounds (in order, then in reverse, and so on) so that a machine whose
    load drifts slows every count alike; per count: the median requests/s over the rounds, the p50 and p95 of all
    its requests, and its answers (which must be the same in every round)."""
    made: dict[int, list[dict]] = {c: [] for c in clients}
    for round_ in range(rounds):
        for c in clients if round_ % 2 == 0 else clients[::-1]:
            made[c].append(load_pass(url, questions, c))
    summary = []
    for c, passes in made.items():
        latencies = sorted(t for p in passes for t in p["latencies"])
        answers = passes[0]["answers"]
        stable = all(p["answers"] == answers for p in passes)
        summary.append({"clients": c, "rps": statistics.median(p["rps"] for p in passes),
                        **{key: statistics.median(p[key] for p in passes)
                           for key in ("prompt_pass_s", "decode_step_s", "decode_steps")},
                        "rps_rounds": [p["rps"] for p in passes], "p50": statistics.median(latencies),
                        "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
                        "answers": answers if stable else {}})
    return summary


def run_calls(program: Path, questions: list[dict]) -> dict:
    """``python cli.py run`` once per question (a new process each: model load included)."""
    answers, seconds = {}, []
    with tempfile.TemporaryDirectory() as folder:
        for question in questions:
            document = Path(folder) / f"{question['id']}.txt"
            document.write_text(question["inputs"]["document"], encoding="utf-8")
            started = time.perf_counter()
            result = subprocess.run([*CLI, "run", "--program", str(program), "-i", f"document=@{document}",
                                     "-i", f"question={question['inputs']['question']}"],
                                    capture_output=True, text=True, timeout=900)
            seconds.append(time.perf_counter() - started)
            if result.returncode != 0:
                raise SystemExit(f"run failed: {result.stderr[-2000:]}")
            answers[question["id"]] = result.stdout.strip()
    total = sum(seconds)
    return {"seconds": total, "rps": len(questions) / total, "per_call": statistics.mean(seconds), "answers": answers}


def recorded_answers(program: Path) -> dict:
    """The predictions the run's evaluation recorded on test, by question id."""
    path = program / "eval" / "test.jsonl"
    if not path.is_file():
        return {}
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {r["id"]: (r.get("prediction") or "").strip() for r in records if r.get("prediction") is not None}


def same(answers: dict, reference: dict) -> str:
    shared = [key for key in answers if key in reference]
    return f"{sum(answers[key] == reference[key] for key in shared)}/{len(shared)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--program", type=Path, required=True, help="a doc_qa compile, distill or sweep run directory")
    parser.add_argument("--n", type=int, default=16, help="questions per pass (the first N of the test split)")
    parser.add_argument("--clients", default="1,4,8,16", help="concurrent clients of each pass, comma-separated")
    parser.add_argument("--threads", type=int, default=16, help="serve --threads (predictions running at once)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="passes per client count, interleaved (the median is reported)")
    parser.add_argument("--run-calls", type=int, default=2, help="questions answered by `cli.py run` (0: skip)")
    parser.add_argument("--prefix-cache-mb", type=float, default=64,
                        help="the server's prefix cache (SMELT_PREFIX_CACHE_MB): room for the prompts' shared part and "
                             "a few questions, so a question asked again a pass later is computed again, as a new "
                             "one would be (the default 1024 would hold every question and time repeats)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    questions = doc_qa_questions(args.n)
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.2f}")
    print(f"program: {args.program}; {args.n} doc_qa test questions per pass, {args.rounds} rounds; "
          f"serve --threads {args.threads}, prefix cache {args.prefix_cache_mb:g} MB")

    process, url = start_server(args.program, args.threads, args.prefix_cache_mb)
    try:
        load_pass(url, questions, max(clients))  # warm-up, untimed: every count's passes start from the same cache
        passes = interleaved_passes(url, questions, clients, args.rounds)
        steps = httpx.get(f"{url}/healthz").json()
    finally:
        process.terminate()
        process.wait(timeout=300)
    anchor = next((p for p in passes if p["clients"] == 1), passes[0])
    recorded = recorded_answers(args.program)
    print(f"\n{'clients':>7}  {'requests/s':>10}  {'x one at a time':>15}  {'p50 s':>6}  {'p95 s':>6}  "
          f"{'same answers as 1 client':>24}  {'same as eval':>12}")
    for p in passes:
        print(f"{p['clients']:>7}  {p['rps']:>10.3f}  {p['rps'] / anchor['rps']:>15.2f}  {p['p50']:>6.2f}  "
              f"{p['p95']:>6.2f}  {same(p['answers'], anchor['answers']):>24}  {same(p['answers'], recorded):>12}")
    print("requests/s is the median of the rounds: " + "; ".join(
        f"{p['clients']}: " + ", ".join(f"{r:.3f}" for r in p["rps_rounds"]) for p in passes))
    print(f"engine: {steps['decode_steps']} decode steps for {steps['completion_tokens']} generated tokens, "
          f"largest batch {steps['peak_batch']}, prefix cache hit rate {steps.get('prefix_cache_hit_rate', 0):.1%}")
    # A request's own prompt pass runs once whatever the concurrency: C clients can be at most (one pass with one
    # client, wall time) / (a pass with C clients, prompt-pass time alone) times faster than one at a time.
    anchor_seconds = len(questions) / anchor["rps"]
    print("the prompt passes' bound on x one at a time: " + "; ".join(
        f"{p['clients']}: {anchor_seconds / p['prompt_pass_s']:.2f}x" for p in passes if p["prompt_pass_s"] > 0))
    print("engine seconds per pass (median): " + "; ".join(
        f"{p['clients']}: prompt passes {p['prompt_pass_s']:.1f} s, {p['decode_steps']:.0f} decode steps "
        f"{p['decode_step_s']:.1f} s ({1000 * p['decode_step_s'] / max(1, p['decode_steps']):.0f} ms each)"
        for p in passes))
    result = {"machine": cpu_name(), "program": str(args.program), "n": args.n, "threads": args.threads,
              "rounds": args.rounds,
              "passes": [{k: v for k, v in p.items() if k != "answers"} for p in passes]}
    if args.run_calls:
        run = run_calls(args.program, questions[:args.run_calls])
        eight = next((p for p in passes if p["clients"] == 8), max(passes, key=lambda p: p["rps"]))
        print(f"`cli.py run` once per input: {run['per_call']:.1f} s per call, {run['rps']:.3f} requests/s; "
              f"serve with {eight['clients']} clients: {eight['rps'] / run['rps']:.1f}x, one client at a time: "
              f"{anchor['rps'] / run['rps']:.1f}x; "
              f"same answers as serve: {same(run['answers'], anchor['answers'])}")
        result["run"] = {k: v for k, v in run.items() if k != "answers"}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
