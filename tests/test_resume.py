"""--resume continues a run with its recorded options; Ctrl-C stops a real eval at once and --resume finishes it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smelt.commands.compile import CompileOptions
from smelt.commands.distill import DistillOptions
from smelt.commands.resume import resumed_options
from smelt.errors import SmeltError
from smelt.files import write_json
from smelt.lifecycle import lock_run_dir, new_run_dir

ROOT = Path(__file__).resolve().parent.parent


def _run_with_manifest(tmp_path, command: str, options: dict, **extra) -> Path:
    run_dir = new_run_dir("doc_qa", command, tmp_path / "runs")
    write_json(run_dir / "manifest.json", {"command": command, "task": "doc_qa", "task_source": "doc_qa",
                                           "options": options, "models": {"program": {"spec": options.get("lm")}},
                                           **extra})
    return run_dir


def _compile_run(tmp_path, **options) -> Path:
    recorded = {"task": "doc_qa", "lm": "qwen2.5-7b", "optimizer": "bootstrap", "max_demos": 2,
                "max_labeled_demos": 2, "program_options": {}, "threads": 8, "seed": 3, "cache": True,
                "data": {"max_dev": 5}, **options}
    return _run_with_manifest(tmp_path, "compile", recorded,
                              program_options={"predictor": "predict", "top_k": 2})


def test_a_resumed_compile_takes_its_recorded_options(tmp_path):
    run_dir = _compile_run(tmp_path)
    resumed = resumed_options(CompileOptions(task="doc_qa", resume=str(run_dir)), "compile", {})
    assert (resumed.lm, resumed.seed, resumed.data.max_dev) == ("qwen2.5-7b", 3, 5)
    assert resumed.program_options == {"predictor": "predict", "top_k": 2}  # the program's full options
    assert resumed.resume == str(run_dir)


@pytest.mark.parametrize("given, fresh, message", [
    ({"lm": "--lm"}, {"lm": "gemma-3-270m"}, "--lm gemma-3-270m contradicts the run, which was started with "
                                              "--lm qwen2.5-7b; drop --lm"),
    ({"program_options.top_k": "-o top_k"}, {"program_options": {"top_k": 5}}, "-o top_k 5 contradicts the run, "
                                                                              "which was started with -o top_k 2"),
    ({"data.max_dev": "--max-dev"}, {}, "--max-dev (not given) contradicts"),
])
def test_a_flag_that_contradicts_the_run_is_refused(tmp_path, given, fresh, message):
    run_dir = _compile_run(tmp_path)
    with pytest.raises(SmeltError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resumed_options(CompileOptions(task="doc_qa", resume=str(run_dir), **fresh), "compile", given)


def test_agreeing_flags_and_parallelism_may_be_given_again(tmp_path):
    run_dir = _compile_run(tmp_path)
    fresh = CompileOptions(task="doc_qa", lm="qwen2.5-7b", threads=2, cache=False, resume=str(run_dir),
                           program_options={"top_k": 2})
    resumed = resumed_options(fresh, "compile", {"lm": "--lm", "threads": "--threads", "cache": "--no-cache",
                                                 "program_options.top_k": "-o top_k"})
    assert (resumed.threads, resumed.cache, resumed.lm) == (2, False, "qwen2.5-7b")


def test_a_library_call_compares_what_differs_from_the_defaults(tmp_path):
    run_dir = _compile_run(tmp_path)
    with pytest.raises(SmeltError, match="seed 1 contradicts the run, which was started with seed 3"):
        resumed_options(CompileOptions(task="doc_qa", lm="qwen2.5-7b", seed=1, resume=str(run_dir)), "compile")
    with pytest.raises(SmeltError, match="optimizer gepa contradicts"):
        resumed_options(CompileOptions(task="doc_qa", optimizer="gepa", resume=str(run_dir)), "compile")


def test_distill_resume_refuses_another_teacher_or_min_score(tmp_path):
    recorded = {"student": "gemma-3-270m", "teacher": "runs/doc_qa/a", "task": "doc_qa", "min_score": 0.5,
                "synthetic": 0, "lora": {}, "data": {}}
    run_dir = _run_with_manifest(tmp_path, "distill", recorded, lora={"r": 8, "epochs": 2})
    resume = str(run_dir)
    for given, fresh, message in [
        ({"teacher": "--teacher"}, {"teacher": "runs/doc_qa/b"}, "--teacher runs/doc_qa/b contradicts"),
        ({"min_score": "--min-score"}, {"min_score": 0.7}, "--min-score 0.7 contradicts"),
        ({"synthetic": "--synthetic"}, {"synthetic": 20}, "--synthetic 20 contradicts"),
        ({"lora.r": "--lora-r"}, {"lora": {"r": 16}}, "--lora-r 16 contradicts the run, which was started with "
                                                     "--lora-r 8"),
    ]:
        with pytest.raises(SmeltError, match=message):
            resumed_options(DistillOptions(student="gemma-3-270m", resume=resume, **fresh), "distill", given)
    same = resumed_options(DistillOptions(resume=resume, lora={"r": 8}), "distill", {"lora.r": "--lora-r"})
    assert (same.student, same.teacher, same.lora) == ("gemma-3-270m", "runs/doc_qa/a", {})


def test_a_finished_run_or_another_command_is_not_resumed(tmp_path):
    run_dir = _compile_run(tmp_path)
    with pytest.raises(SmeltError, match="a compile run, not a distill run"):
        resumed_options(DistillOptions(resume=str(run_dir)), "distill", {})
    (run_dir / "summary.json").write_text("{}")
    with pytest.raises(SmeltError, match="this run already finished"):
        resumed_options(CompileOptions(resume=str(run_dir)), "compile", {})


def test_a_recorded_api_base_password_must_be_given_again(tmp_path):
    run_dir = _compile_run(tmp_path, api_base="https://user:***@gpu-box/v1")
    with pytest.raises(SmeltError, match="pass --api-base again"):
        resumed_options(CompileOptions(resume=str(run_dir), api_base="recorded"), "compile",
                        {"api_base": "--api-base"})
    resumed = resumed_options(CompileOptions(resume=str(run_dir), api_base="https://user:pw@gpu-box/v1"), "compile",
                              {"api_base": "--api-base"})
    assert resumed.api_base == "https://user:pw@gpu-box/v1"


def test_a_run_directory_is_written_by_one_process_at_a_time(tmp_path):
    run_dir = new_run_dir("doc_qa", "compile", tmp_path)
    lock_run_dir(run_dir)
    code = ("from smelt.lifecycle import lock_run_dir; from smelt.errors import SmeltError\n"
            f"try:\n    lock_run_dir({str(run_dir)!r})\nexcept SmeltError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"another smelt process (pid {os.getpid()}) is writing this run" in out


# --- Ctrl-C on a real eval -------------------------------------------------------------------------------------


@pytest.fixture
def program_run(tmp_path):
    """A compile run of doc_qa holding the uncompiled program on the embedded model (no model call to make it)."""
    from smelt.lifecycle import build_manifest
    from smelt.programs.registry import get_task

    task = get_task("doc_qa")
    run_dir = new_run_dir("doc_qa", "compile", tmp_path / "runs")
    write_json(run_dir / "manifest.json", build_manifest(
        command="compile", task=task, options={}, seed=0, models={"program": {"spec": "gemma-3-270m"}},
        data_sources={}, program_options=task.default_options(), extra={"metric": "f1"}))
    task.program().save(str(run_dir / "program.json"))
    return run_dir


def _eval(program_run, runs_root, *extra, wait=True):
    command = [sys.executable, str(ROOT / "cli.py"), "eval", "--program", str(program_run), "--max-test", "10",
               "--threads", "2", "--latency-sample", "0", "--no-cache", "--runs-root", str(runs_root), *extra]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    # A test run started in the background (`cmd &`) ignores SIGINT, and children inherit that: give the eval
    # Ctrl-C back, as a terminal would.
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _scores(run_dir: Path) -> dict:
    return {r["id"]: (r["prediction"], r["score"]) for r in map(json.loads, (run_dir / "eval" / "test.jsonl")
                                                               .read_text(encoding="utf-8").splitlines())}


def test_ctrl_c_stops_an_eval_at_once_and_resume_finishes_it(program_run, tmp_path):
    interrupted_root = tmp_path / "interrupted"
    process = _eval(program_run, interrupted_root, wait=False)
    lines = None
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        found = list(interrupted_root.glob("doc_qa/*-eval/eval/test.jsonl"))
        if found and len(found[0].read_text(encoding="utf-8").splitlines()) >= 2:
            lines = found[0]
            break
        time.sleep(0.2)
    assert lines is not None, "the eval wrote no lines: " + (process.stderr.read() if process.poll() else "")
    process.send_signal(signal.SIGINT)
    signalled = time.time()
    _, stderr = process.communicate(timeout=60)
    assert time.time() - signalled < 5, f"took {time.time() - signalled:.1f} s to stop"
    assert process.returncode == 130
    assert "Traceback" not in stderr
    run_dir = lines.parent.parent
    assert f"continue with: python cli.py eval --resume {run_dir}" in stderr
    kept = _scores(run_dir)  # every line whole
    assert 2 <= len(kept) < 10

    resumed = subprocess.run([sys.executable, str(ROOT / "cli.py"), "eval", "--resume", str(run_dir)],
                             capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    finished = _scores(run_dir)
    assert len(finished) == 10 and all(finished[k] == v for k, v in kept.items())

    straight = _eval(program_run, tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr
    (straight_dir,) = (tmp_path / "straight").glob("doc_qa/*-eval")
    assert _scores(straight_dir) == finished
    summary = lambda d: json.loads((d / "summary.json").read_text())["test"]["score"]  # noqa: E731
    assert summary(run_dir) == summary(straight_dir)
