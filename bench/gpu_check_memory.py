"""Peak memory of one GPU check phase, sampled from outside it: ``python -m bench.gpu_check_memory PID OUT.json``.

Every half second: the resident memory of PID and all its descendants (the phase's command, a sweep's workers),
and the GPUs' used memory as nvidia-smi reports it, less what was used when sampling began (the check has the
GPUs to itself). The peaks are written to OUT.json as they grow, so a phase killed by its timeout keeps them.
"""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

INTERVAL_S = 0.5


def tree_rss(root: psutil.Process) -> int:
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.Error:  # ended between listing and reading
            pass
    return total


def gpu_used_mib() -> int | None:
    """MiB used on all GPUs together (nvidia-smi), or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=10)
        return sum(int(line) for line in result.stdout.split()) if result.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def main(argv: list[str]) -> int:
    pid, out = int(argv[0]), Path(argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return 0
    baseline = gpu_used_mib()
    peak = {"peak_rss_mib": 0, "peak_gpu_mib": None if baseline is None else 0}
    while root.is_running():
        rss = tree_rss(root) // 2**20
        gpu = gpu_used_mib()
        grown = rss > peak["peak_rss_mib"]
        peak["peak_rss_mib"] = max(peak["peak_rss_mib"], rss)
        if gpu is not None and baseline is not None and gpu - baseline > peak["peak_gpu_mib"]:
            peak["peak_gpu_mib"], grown = gpu - baseline, True
        if grown:  # a whole file each time: the phase's record never reads half of one
            out.with_suffix(".tmp").write_text(json.dumps(peak) + "\n")
            out.with_suffix(".tmp").replace(out)
        time.sleep(INTERVAL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
