"""The Python side of bench/gpu_check.sh: each subcommand is one step the script runs (the script holds the order,
the timeouts and the phases' command lines).

    python -m bench.gpu_check env --device cuda --out OUT/env.json      # GPU, driver, CUDA, library versions
    python -m bench.gpu_check model --shape 3b --device cuda --out DIR  # the random-weight model (gpu_check_model)
    python -m bench.gpu_check record OUT NAME EXIT_CODE STARTED ENDED LIMIT   # one phase's record
    python -m bench.gpu_check summarize OUT                              # OUT/summary.json and OUT/summary.md
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.machine import cpu_name

LIBRARIES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "dspy", "optuna", "smelt")
TIMED_OUT = (124, 137)  # timeout's exit code; 128 + SIGKILL once --kill-after is spent


def environment(device: str) -> dict:
    """What the check ran on; refuses a CUDA check where torch sees no GPU."""
    import torch

    on_gpu = device.startswith("cuda")
    if on_gpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU is visible to torch (torch.cuda.is_available() is False); on a CPU run the "
                         "check as SMALL=1 bash bench/gpu_check.sh")
    gpus = []
    for index in range(torch.cuda.device_count() if on_gpu else 0):
        properties = torch.cuda.get_device_properties(index)
        gpus.append({"name": properties.name, "memory_gib": round(properties.total_memory / 2**30, 1),
                     "capability": f"{properties.major}.{properties.minor}"})
    return {
        "device": device,
        "gpus": gpus,
        "driver": _nvidia_smi("driver_version"),
        "cuda_runtime": torch.version.cuda,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in LIBRARIES},
    }


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _nvidia_smi(field: str) -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"], capture_output=True,
                            text=True)
    return result.stdout.splitlines()[0].strip() if result.returncode == 0 and result.stdout.strip() else None


def record(out: Path, name: str, exit_code: int, started: float, ended: float, limit: float) -> dict:
    """One phase: its exit code, status, wall time against its limit, peak memory (gpu_check_memory) and, for a
    smelt command, the run directory it printed."""
    memory_file = out / "phases" / f"{name}.memory.json"
    memory = json.loads(memory_file.read_text()) if memory_file.is_file() else {}
    log = out / "logs" / f"{name}.log"
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    run_dir = next((line.split(":", 1)[1].strip() for line in reversed(lines) if line.startswith("run directory:")),
                   None)
    status = "ok" if exit_code == 0 else "timed out" if exit_code in TIMED_OUT else "failed"
    phase = {"name": name, "exit_code": exit_code, "status": status, "wall_s": round(ended - started, 1),
             "limit_s": limit, "started": started, "peak_gpu_mib": memory.get("peak_gpu_mib"),
             "peak_rss_mib": memory.get("peak_rss_mib"), "log": str(log.relative_to(out)), "run_dir": run_dir}
    if exit_code != 0:
        phase["log_tail"] = [line[:300] for line in lines[-8:]]
    (out / "phases" / f"{name}.json").write_text(json.dumps(phase, indent=2) + "\n")
    print(f"[gpu_check] {name}: {status} (exit code {exit_code}) in {phase['wall_s']} s", flush=True)
    return phase


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    env = steps.add_parser("env", help="the environment, as JSON")
    env.add_argument("--device", default="cuda")
    env.add_argument("--out", type=Path, required=True)
    model = steps.add_parser("model", help="build the random-weight model folder")
    model.add_argument("--shape", choices=("3b", "tiny"), required=True)
    model.add_argument("--device", default="cuda")
    model.add_argument("--out", type=Path, required=True)
    rec = steps.add_parser("record", help="one phase's record")
    rec.add_argument("out", type=Path)
    rec.add_argument("name")
    for field in ("exit_code", "started", "ended", "limit"):
        rec.add_argument(field, type=int if field == "exit_code" else float)
    summarize = steps.add_parser("summarize", help="summary.json and summary.md")
    summarize.add_argument("out", type=Path)
    args = parser.parse_args(argv)

    if args.step == "env":
        found = environment(args.device)
        args.out.write_text(json.dumps(found, indent=2) + "\n")
        print(json.dumps(found, indent=2))
    elif args.step == "model":
        from bench.gpu_check_model import build_model

        built = build_model(args.shape, args.out, args.device)
        (args.out.parent / "model.json").write_text(json.dumps(built, indent=2) + "\n")
        print(json.dumps(built, indent=2))
    elif args.step == "record":
        record(args.out, args.name, args.exit_code, args.started, args.ended, args.limit)
    else:
        from bench.gpu_check_summary import write_summary

        print(write_summary(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
