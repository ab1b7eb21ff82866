"""The run lifecycle: run directories (``directory``), their manifest (``manifest``), the task a run was made for
(``recorded_task``), and one ``Run`` from opening to reports (``run``). Every command writes its results
through this package."""

from smelt.lifecycle.directory import (
    RUNS_ROOT,
    check_runs_root,
    drop_resume_hint,
    enclosing_run,
    latest_run,
    lock_run_dir,
    new_run_dir,
    open_run_dir,
    resume_command,
    resume_hint,
    runs_root,
)
from smelt.lifecycle.manifest import build_manifest, data_fingerprints, read_manifest
from smelt.lifecycle.run import Run, RunOutcome, peak_memory_mb

__all__ = [
    "RUNS_ROOT", "Run", "RunOutcome", "build_manifest", "check_runs_root", "data_fingerprints",
    "drop_resume_hint", "enclosing_run", "latest_run", "lock_run_dir", "new_run_dir", "open_run_dir", "peak_memory_mb",
    "read_manifest", "resume_command", "resume_hint", "runs_root",
]
