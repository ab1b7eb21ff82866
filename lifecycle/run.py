"""One run, start to finish: its directory (new or resumed, locked), its manifest, the programs it scores, and
its summary and reports. Every command (compile, distill, eval, sweep and each sweep trial) goes through ``Run``:

    run = Run.open(task, "compile", resume=..., runs_root=..., threads=8, manifest=lambda: build_manifest(...))
    baseline = run.score(program, splits.dev, name="baseline.dev", metric=metric, lm=lm, desc="baseline dev")
    ...
    return run.finish(summary, report=lambda summary: "# compile ...", table=...)

Each scored split is appended to ``eval/<name>.jsonl`` as examples finish, so a resumed run scores only what is
missing; ``finish`` adds the wall time and peak memory to the summary and writes summary.json, report.md and
report.html, in that order, each whole or not at all.
"""

import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from smelt.eval.evaluate import EvalResult, evaluate
from smelt.eval.reports.html import write_html_report
from smelt.files import write_json, write_text
from smelt.lifecycle.directory import open_run_dir
from smelt.log import to_stderr
from smelt.programs.task import Task


class RunOutcome(NamedTuple):
    """What every command returns: where its run is, its headline numbers, and the table it prints."""

    run_dir: Path
    summary: dict
    table: str


@dataclass
class Run:
    """A run directory being written by this process (see the module docstring)."""

    dir: Path
    command: str
    task: Task
    threads: int = 8
    log: Callable[[str], None] = to_stderr
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def open(cls, task: Task, command: str, *, manifest: Callable[[], dict], resume: str | None = None,
             runs_root: str | None = None, threads: int = 8, log: Callable[[str], None] = to_stderr,
             started: float | None = None) -> "Run":
        """A new run directory under the runs root (or the one --resume names), locked for this process; its
        manifest is written once, from ``manifest()``, and kept as it is on resume. ``started``: when the command
        began (``time.perf_counter()``), for the summary's wall time; default now."""
        run_dir = open_run_dir(task.name, command, resume=resume, root=runs_root)
        run = cls(run_dir, command, task, threads, log, started or time.perf_counter())
        run.write_manifest(manifest)
        log(f"[smelt] run directory: {run_dir}")
        return run

    @classmethod
    def in_folder(cls, folder: Path, command: str, task: Task, *, manifest: Callable[[], dict], threads: int = 8,
                  log: Callable[[str], None] = to_stderr) -> "Run":
        """A run in a folder its caller owns (a sweep's trial under ``trials/``), not under the runs root."""
        (folder / "eval").mkdir(parents=True, exist_ok=True)
        run = cls(folder, command, task, threads, log)
        run.write_manifest(manifest)
        return run

    def write_manifest(self, manifest: Callable[[], dict]) -> None:
        path = self.dir / "manifest.json"
        if not path.exists():
            write_json(path, manifest())

    def score(self, program, examples: list, *, name: str, metric, lm, desc: str, latency_sample: int = 0,
              progress: Callable[[int, float], None] | None = None) -> EvalResult:
        """Score ``program`` on ``examples`` into ``eval/<name>.jsonl`` (examples already there are kept)."""
        return evaluate(program, examples, metric=metric, lm=lm, threads=self.threads,
                        out_path=self.dir / "eval" / f"{name}.jsonl", desc=desc, latency_sample=latency_sample,
                        progress=progress)

    def finish(self, summary: dict, *, report: Callable[[dict], str] | None = None, table: str = "") -> RunOutcome:
        """summary.json (with the wall time and peak memory), then report.md (``report(summary)``) and report.html;
        without ``report`` (a sweep's trial, which the sweep reports on) the summary alone."""
        summary = {**summary, "wall_s": round(time.perf_counter() - self.started, 1),
                   "peak_memory_mb": peak_memory_mb()}
        write_json(self.dir / "summary.json", summary)
        if report is not None:
            write_text(self.dir / "report.md", report(summary))
            write_html_report(self.dir, log=self.log)
        return RunOutcome(self.dir, summary, table)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (and of the GPU, if one was used)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return round(rss + torch.cuda.max_memory_allocated() / 2**20, 1)
    except ImportError:
        pass
    return round(rss, 1)
