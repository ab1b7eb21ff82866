"""Memory of ``serve RUN [RUN ...] --lm gguf:gemma-3-270m``: one process, one copy of the base on llama.cpp, one LoRA
adapter per run. The anchor is one run served alone; each other count is measured in the same invocation.

RUN_DIR is a distill run of gemma-3-270m. It is copied into N run folders (data: the run's program, manifest and
adapter), each copy's adapter B weights scaled by 1 + k/1000, so that every copy is an adapter of its own (llama.cpp
loads identical files once) and of the run's very size. For each N (1, 4, 16 by default) a fresh ``serve`` process
answers one /v1/NAME/predict per run, one at a time; its peak resident set (VmHWM, read from /proc before it stops)
is the number. The GGUF adapters are converted beforehand in this process, so that the serve process only reads
them from smelt's cache, as every serve after the first does.

    nice -n 19 python -m bench.serve_adapters RUN_DIR [--counts 1 4 16]   # from the repository root, Linux
"""

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]
GGUF = "gguf:gemma-3-270m"
SAMPLE_TEXT = "The pool opens at 9:00 and closes at 21:00. Entry costs 400 yen."


def copy_runs(run_dir: Path, count: int, into: Path) -> list[Path]:
    """``count`` copies of the run (its checkpoints left out), each with its own adapter bytes."""
    from safetensors.torch import load_file, save_file

    from smelt.lm.gguf_files import gguf_model
    from smelt.lm.lora_gguf import gguf_lora_adapter
    from smelt.lm.specs import parse_spec

    base = gguf_model(parse_spec(GGUF).target).path
    copies = []
    for k in range(count):
        copy = into / f"run-{k:02d}"
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("checkpoints", "compiled_student"))
        weights_file = copy / "adapter" / "adapter_model.safetensors"
        weights = load_file(weights_file)
        save_file({name: w * (1 + k / 1000) if "lora_B" in name else w for name, w in weights.items()},
                  weights_file)
        gguf_lora_adapter(copy / "adapter", base)  # converted here, read from the cache by serve
        copies.append(copy)
    return copies


def peak_rss_of_serve(runs: list[Path]) -> dict:
    """Start ``serve`` on ``runs``, send each run one predict request, read the process's VmHWM and VmRSS."""
    process = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", *map(str, runs), "--lm", GGUF,
                                "--device", "cpu", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines, ready = [], threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if "[smelt] serving" in line:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    started = time.perf_counter()
    try:
        if not ready.wait(600) or process.poll() is not None:
            raise RuntimeError("serve did not start:\n" + "".join(lines)[-3000:])
        ready_s = time.perf_counter() - started
        url = re.search(r"on (http://127\.0\.0\.1:\d+)/", "".join(lines)).group(1)
        several = len(runs) > 1
        with httpx.Client(base_url=url, timeout=600) as client:
            for run in runs:
                prefix = f"/v1/{run.name}" if several else "/v1"
                fields = [field["name"] for field in client.get(f"{prefix}/program").json()["task"]["inputs"]]
                reply = client.post(f"{prefix}/predict", json=dict.fromkeys(fields, SAMPLE_TEXT))
                reply.raise_for_status()
        status = dict(line.split(":", 1) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines())
        kib = {field: int(status[field].split()[0]) for field in ("VmHWM", "VmRSS")}
        return {"peak_mib": kib["VmHWM"] / 1024, "rss_mib": kib["VmRSS"] / 1024, "ready_s": ready_s}
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a distill run of gemma-3-270m")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 4, 16], help="runs served together; the "
                                                                                    "first is the anchor")
    args = parser.parse_args()
    from smelt.lm.gguf_files import gguf_model
    from smelt.lm.lora_gguf import gguf_lora_adapter
    from smelt.lm.specs import parse_spec

    adapter_mib = gguf_lora_adapter(args.run_dir / "adapter", gguf_model(parse_spec(GGUF).target).path).stat().st_size
    print(f"# serve several runs on one base: {GGUF} on llama.cpp (CPU), {cpu_name()}, {platform.system()}; "
          f"the GGUF adapter of {args.run_dir}: {adapter_mib / 2**20:.1f} MiB")
    print(f"{'adapters':>8}  {'peak RSS MiB':>12}  {'RSS MiB':>8}  {'vs anchor':>9}  {'per added adapter':>17}  "
          f"{'ready s':>7}")
    anchor = None
    with tempfile.TemporaryDirectory(prefix="serve-adapters-") as scratch:
        for count in args.counts:
            folder = Path(scratch) / f"n{count}"
            folder.mkdir()
            measured = peak_rss_of_serve(copy_runs(args.run_dir, count, folder))
            if anchor is None:
                anchor = (count, measured["peak_mib"])
            added = count - anchor[0]
            growth = measured["peak_mib"] - anchor[1]
            per = f"{growth / added:+.2f} MiB" if added else "(anchor)"
            print(f"{count:>8}  {measured['peak_mib']:>12.1f}  {measured['rss_mib']:>8.1f}  "
                  f"{measured['peak_mib'] / anchor[1]:>8.3f}x  {per:>17}  {measured['ready_s']:>7.1f}", flush=True)
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
