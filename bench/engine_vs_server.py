"""smelt's in-process engine against llama.cpp's server, on the same prompts and the same weights.

The workload is ``bench/engine_throughput.py``'s: 16 doc_qa prompts with two demos (every prompt starts with the
same system message and demos), greedy, the predictor's max tokens and the chat adapter's stop strings.

- smelt: the program called from 1 and from 8 DSPy threads on the engine (continuous batching, prefix cache emptied
  first, prompt-lookup drafts as shipped), in this process.
- llama.cpp, by default as smelt's ``gguf:`` backend runs it: llama.cpp's server from the xllamacpp wheel (a
  dependency of smelt, no build), started by ``smelt.lm.llamacpp_server`` with 1 slot, and with ``--slots``
  slots for as many concurrent clients, in a process of its own (so that its peak memory is its own: the Python
  interpreter and llama.cpp), on the Gemma 3 270M GGUF that smelt ships (Q4_K_M).
- or, with ``--llama-bin``, a native ``llama-server`` you built (``-np 1``, and ``-np 8 --cont-batching``), on the
  Q4_K_M file and on an F32 GGUF of the same weights (``llama-quantize --allow-requantize``: the Q4_K_M tensors
  dequantized, which is what smelt's engine computes with).

Each request is the very token ids smelt's engine sees (``/completion`` with a token-id prompt), ``temperature``
0, the same ``n_predict`` and stop strings, ``cache_prompt`` on. Printed for each: examples/s, generated tokens/s,
the ratio to smelt's engine at the same concurrency, answers identical to the engine's, and peak resident memory
(the server process's ``VmHWM``; for smelt the whole process, model included).

    python -m bench.engine_vs_server [--n 16] [--slots 8] [--json FILE]       # the xllamacpp wheel

    pip download --no-deps --no-binary :all: llama-cpp-python    # the sdist carries llama.cpp's source
    tar xzf llama_cpp_python-*.tar.gz && cd llama_cpp_python-*/vendor/llama.cpp
    cmake -B build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
    cmake --build build --target llama-server llama-quantize -j
    python -m bench.engine_vs_server --llama-bin DIR/build/bin [--n 16] [--slots 8] [--json FILE]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.engine_throughput import cut, doc_qa_workload, engine_pass, throughput_numbers
from bench.machine import cpu_name
from smelt.lm import lm_for_spec
from smelt.lm.embedded import EMBEDDED_SPEC
from smelt.lm.generation import GenerationSettings
from smelt.lm.gguf_files import gguf_model
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.lm.rendering import encode_prompt


def f32_gguf(source: Path, llama_bin: Path) -> Path:
    """The same weights as F32 (dequantized by llama-quantize), made once next to the source."""
    target = source.with_name(source.stem + "-f32.gguf")
    if not target.exists():
        partial = target.with_suffix(".partial")
        subprocess.run([str(llama_bin / "llama-quantize"), "--allow-requantize", str(source), str(partial), "F32"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        partial.replace(target)
    return target


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LlamaServer:
    """llama-server on loopback for one configuration; its peak RSS is read from /proc when it stops."""

    def __init__(self, llama_bin: Path, gguf: Path, slots: int, context: int, threads: int):
        self.port = free_port()
        command = [str(llama_bin / "llama-server"), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(self.port),
                   "-np", str(slots), "-c", str(context * slots), "-t", str(threads), "-tb", str(threads),
                   "--no-webui"]
        if slots > 1:
            command.append("--cont-batching")
        self.log = tempfile.NamedTemporaryFile("w+", prefix="llama-server-", suffix=".log", delete=False)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"llama-server exited with {self.process.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"llama-server did not become ready in 120 s; see {self.log.name}")

    def peak_rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> int:
        peak = self.peak_rss()
        self.process.terminate()
        self.process.wait(timeout=30)
        return peak


# The child process of WheelServer: smelt's own llama.cpp server for gguf: models, until its stdin closes.
_WHEEL_CHILD = """
import json, sys
from pathlib import Path
from smelt.lm.llamacpp_server import server_for
server = server_for(Path(sys.argv[1]), context_length=int(sys.argv[2]), slots=int(sys.argv[3]), device="cpu")
print(json.dumps({"url": server.url.removesuffix("/v1"), "key": server.api_key}), flush=True)
sys.stdin.read()
"""


class WheelServer(LlamaServer):
    """llama.cpp's server from the xllamacpp wheel, started as smelt's gguf: backend starts it (its slots, context
    per slot and key), alone in a child process."""

    def __init__(self, gguf: Path, slots: int, context_length: int):
        self.process = subprocess.Popen([sys.executable, "-c", _WHEEL_CHILD, str(gguf), str(context_length),
                                         str(slots)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(self.process.stdout.readline() or "null")
        if ready is None:
            raise SystemExit(f"the xllamacpp server exited with {self.process.wait()}")
        self.url, self.headers = ready["url"], {"Authorization": f"Bearer {ready['key']}"}

    def stop(self) -> int:
        peak = self.peak_rss()
        self.process.stdin.close()  # the child returns, and its server stops at exit
        self.process.wait(timeout=60)
        return peak


def server_pass(server: LlamaServer, prompt_ids: list[list[int]], max_tokens: int, stops: list[str],
                clients: int) -> tuple[float, int, list[str]]:
    """Every prompt sent from `clients` concurrent clients; returns (seconds, generated tokens, answers)."""
    client = httpx.Client(timeout=600, headers=getattr(server, "headers", {}))

    def complete(ids: list[int]) -> tuple[int, str]:
        reply = client.post(f"{server.url}/completion", json={
            "prompt": ids, "n_predict": max_tokens, "temperature": 0.0, "stop": stops, "cache_prompt": True})
        reply.raise_for_status()
        body = reply.json()
        return body["tokens_predicted"], cut(body["content"], stops)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(complete, prompt_ids))
    seconds = time.perf_counter() - started
    client.close()
    return seconds, sum(tokens for tokens, _ in results), [answer for _, answer in results]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-bin", type=Path, default=None,
                        help="the folder holding a llama.cpp build's llama-server and llama-quantize (its build/bin), "
                             "to measure that build (Q4_K_M and F32) instead of the xllamacpp wheel (Q4_K_M)")
    parser.add_argument("--n", type=int, default=16, help="number of doc_qa prompts")
    parser.add_argument("--slots", type=int, default=8, help="concurrent clients, engine threads and server slots")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="llama-server's CPU threads (--llama-bin; the wheel uses llama.cpp's default)")
    parser.add_argument("--no-f32", action="store_true",
                        help="skip the F32 GGUF (the Q4_K_M one only); the wheel measures Q4_K_M only")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    program, predictor, inputs, predictor_inputs = doc_qa_workload(args.n, "mixed", None)
    resolved = lm_for_spec("gemma-3-270m", device="cpu", max_tokens=32, cache=False)
    engine = resolved.engine
    adapter = PrefillChatAdapter()
    prompt_ids = [encode_prompt(engine.tokenizer, adapter.format(predictor.signature, predictor.demos, example))
                  for example in predictor_inputs]
    stops = adapter.stop_strings(predictor.signature)
    max_tokens = predictor.config.get("max_tokens") or 32
    context = max(len(ids) for ids in prompt_ids) + max_tokens + 64
    n = len(prompt_ids)
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs; load average before: {os.getloadavg()[0]:.2f}")
    print(f"prompts: {n} doc_qa with 2 demos, {min(map(len, prompt_ids))}-{max(map(len, prompt_ids))} tokens, "
          f"max new tokens {max_tokens}, stops {stops}")

    # warm-up: first-call allocations, the engine's int8 head
    engine.generate_batch(prompt_ids[:1], GenerationSettings(max_new_tokens=4, stop=tuple(stops)))
    results: dict = {"machine": cpu_name(), "prompts": n, "max_new_tokens": max_tokens}
    smelt = {}
    for clients in (1, args.slots):
        run = engine_pass(resolved, program, inputs, clients, on_gpu=False)
        smelt[clients] = run
        results[f"smelt_{clients}"] = _numbers(n, run.seconds, run.tokens, run.rss) | {
            "prompt_pass_s": round(run.prompt_pass_s, 2), "decode_step_s": round(run.decode_step_s, 2),
            "decode_steps": run.steps}
        print(f"smelt engine, {clients} thread(s): {n / run.seconds:6.3f} examples/s  {run.tokens / run.seconds:6.1f} "
              f"tokens/s  ({run.seconds:.1f} s, {run.tokens} tokens)  peak RSS {run.rss / 2**20:.0f} MiB  "
              f"(prompt passes {run.prompt_pass_s:.1f} s, {run.steps} decode steps {run.decode_step_s:.1f} s)")
    # Prompt passes run one request at a time, so no concurrency makes the batch faster than its prompt passes.
    bound = smelt[1].seconds / smelt[args.slots].prompt_pass_s
    results["concurrency_bound"] = round(bound, 2)
    print(f"smelt engine, {args.slots} vs 1 thread: {smelt[1].seconds / smelt[args.slots].seconds:.2f}x; with free "
          f"decode steps at most {bound:.2f}x (the one-at-a-time time over the prompt passes' own time)")
    reference = [smelt[1].answers.get(tuple(ids)) for ids in prompt_ids]

    shipped = gguf_model(EMBEDDED_SPEC)
    ggufs = {"Q4_K_M": shipped.path}
    if args.llama_bin and not args.no_f32:
        ggufs["F32"] = f32_gguf(ggufs["Q4_K_M"], args.llama_bin)
    runtime = "llama-server" if args.llama_bin else "xllamacpp"
    results["llama_cpp"] = f"llama-server from {args.llama_bin}" if args.llama_bin else f"xllamacpp {_version()}"
    for label, gguf in ggufs.items():
        for clients in (1, args.slots):
            server = (LlamaServer(args.llama_bin, gguf, clients, context, args.threads) if args.llama_bin
                      else WheelServer(gguf, clients, shipped.context_length))
            try:
                server_pass(server, prompt_ids[:1], 4, stops, 1)  # warm-up
                seconds, tokens, answers = server_pass(server, prompt_ids, max_tokens, stops, clients)
            finally:
                peak = server.stop()
            same = sum(answer == expected for answer, expected in zip(answers, reference, strict=True))
            ratio = seconds / smelt[clients].seconds  # > 1: smelt is faster
            name = f"llama_{label}_{clients}"
            results[name] = _numbers(n, seconds, tokens, peak) | {"identical_to_smelt": same,
                                                                  "smelt_speedup": round(ratio, 2)}
            print(f"{runtime} {label}, {clients} slot(s), {clients} client(s): {n / seconds:6.3f} examples/s  "
                  f"{tokens / seconds:6.1f} tokens/s  ({seconds:.1f} s, {tokens} tokens)  peak RSS "
                  f"{peak / 2**20:.0f} MiB  answers identical to smelt's {same}/{n}  smelt/llama.cpp "
                  f"examples/s: {ratio:.2f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other busy processes on this machine skew both sides)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def _version() -> str:
    from importlib.metadata import version

    return version("xllamacpp")


def _numbers(n: int, seconds: float, tokens: int, rss: int) -> dict:
    return throughput_numbers(n, seconds, tokens, 0) | {"peak_rss_mib": rss // 2**20}


if __name__ == "__main__":
    main()
