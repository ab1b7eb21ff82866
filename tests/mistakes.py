"""The shared check of user mistakes run through the real CLI, and the world they run in.

Every case runs `python cli.py ...` in a subprocess, in a fresh working folder, with `--runs-root` in a temporary
folder that already holds a few runs (finished, unfinished, eval, distill with a foreign adapter). The shared
check (``run_mistake``):

- exit status not 0, no traceback;
- stderr is exactly one line, starting with `error: ` (a progress bar, a warning or a log line would break it);
- that line holds the key words of the case (the file, line or option at fault, and what to do);
- nothing written outside a NEW run directory `runs/<task>/<stamp>-<command>`: files of runs that existed before
  are byte-identical, the data folder and the working folder are untouched. Most mistakes must be caught before
  any run directory is made; only the cases that fail on their model calls may leave one.

"""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "cli.py"
ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
ENV.pop("SMELT_RUNS", None)  # every command gets --runs-root; a stray ./runs in the working folder is caught
# Commands that take --runs-root (every case of theirs gets it).
WITH_RUNS_ROOT = {"compile", "eval", "distill", "sweep"}
# A run directory as runs.new_run_dir names it: <task>/<YYYYmmdd-HHMMSS>-<command>[-N]
RUN_DIR_NAME = re.compile(r"^\d{8}-\d{6}-(compile|eval|distill|sweep)(-\d+)?$")
HAS_GPU = shutil.which("nvidia-smi") is not None or Path("/dev/nvidiactl").exists()


# ---------------------------------------------------------------------------- the shared check


def snapshot(*folders: Path) -> dict[Path, str]:
    """Every file and folder under ``folders``: path -> sha256 of its bytes ("dir" for a folder)."""
    found = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in folder.rglob("*"):
            if path.is_dir():
                found[path] = "dir"
            elif path.is_file():
                found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                found[path] = "other"
    return found


def _new_run_dir_of(path: Path, runs: Path, before: dict[Path, str]) -> Path | None:
    """The run directory ``runs/<task>/<stamp>-<command>`` that ``path`` is (or lies in), if that run is new."""
    try:
        parts = path.relative_to(runs).parts
    except ValueError:
        return None
    if len(parts) < 2 or not RUN_DIR_NAME.match(parts[1]):
        return None
    run_dir = runs / parts[0] / parts[1]
    return run_dir if run_dir not in before else None


def written_outside_a_new_run(before: dict[Path, str], after: dict[Path, str], runs: Path,
                              allow_new_run: bool) -> list[str]:
    """What the command wrote where it must not (empty: nothing)."""
    problems = []
    changed = [str(p) for p, digest in before.items() if after.get(p) != digest]
    if changed:
        problems.append(f"files that existed before were changed or removed: {changed}")
    new = [p for p in after if p not in before]
    new_runs = {run for p in new if (run := _new_run_dir_of(p, runs, before))}
    # runs/<task>/ itself may be new when it holds the new run directory.
    stray = [str(p) for p in new if not _new_run_dir_of(p, runs, before)
             and not (p.parent == runs and any(run.parent == p for run in new_runs))]
    if stray:
        problems.append(f"written outside a new run directory: {stray}")
    if new_runs and not allow_new_run:
        problems.append(f"a mistake caught before any work should leave no run directory: {sorted(map(str, new_runs))}")
    if len(new_runs) > 1:
        problems.append(f"more than one new run directory: {sorted(map(str, new_runs))}")
    return problems


def run_mistake(world: dict, work: Path, args: list[str], fragments: list[str], *, allow_new_run: bool = False,
                absent: tuple[str, ...] = (), env: dict | None = None, stdin: str | None = None,
                timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``cli.py ARGS`` in ``work`` and check it fails as a user mistake should (see the module docstring):
    the error line holds every one of ``fragments`` and none of ``absent`` (advice that does not apply). Every
    check runs; a failure lists all that went wrong."""
    work.mkdir(parents=True, exist_ok=True)
    watched = (world["runs"], world["data"], work)
    before = snapshot(*watched)
    argv = [sys.executable, str(CLI), *args]
    if args and args[0] in WITH_RUNS_ROOT and "--runs-root" not in args:
        argv += ["--runs-root", str(world["runs"])]
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=work, env=env or ENV, capture_output=True, text=True, input=stdin,
                            timeout=timeout)
    result.wall_s = time.perf_counter() - started
    problems = []
    if result.returncode == 0:
        problems.append("exit status 0")
    if "Traceback" in result.stderr + result.stdout:
        problems.append("a traceback")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    if allow_new_run:  # a run that started shows its progress first; its error is then the one, last line
        if len(errors) != 1 or lines[-1] != errors[0]:
            problems.append(f"{len(errors)} lines start with `error: `; expected exactly one, the last")
    elif len(lines) != 1 or len(errors) != 1:
        problems.append(f"{len(lines)} lines on stderr, {len(errors)} starting with `error: `; expected exactly one")
    message = errors[0] if errors else ""
    problems += [f"{fragment!r} not in the error line" for fragment in fragments if fragment not in message]
    problems += [f"{fragment!r} does not apply here, yet the error line says it" for fragment in absent
                 if fragment in message]
    problems += written_outside_a_new_run(before, snapshot(*watched), world["runs"], allow_new_run)
    assert not problems, "; ".join(problems) + f"\nexit {result.returncode} after {result.wall_s:.1f}s\n" \
        f"stderr:\n{result.stderr[-3000:]}\nstdout:\n{result.stdout[-1000:]}"
    return result


# ---------------------------------------------------------------------------- the world the cases run in


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def _qa(i: int) -> dict:
    return {"document": f"The library opens at {i}:00.", "question": "When does the library open?",
            "answer": f"{i}:00"}


def _long_text(i: int, chars: int = 140_000) -> str:
    """~140,000 characters of Japanese and English notices: far past the embedded model's context (32k tokens)."""
    unit = f"お知らせ{i}：北台図書館は毎週月曜日に休館します。Notice {i}: the pool opens at 9:00 on weekdays. "
    return (unit * (chars // len(unit) + 1))[:chars]


def _write_data(data: Path) -> None:
    good = [_qa(i) for i in range(1, 7)]
    _jsonl(data / "good.jsonl", good)
    (data / "empty.jsonl").write_bytes(b"")
    (data / "latin1.jsonl").write_bytes(
        json.dumps(good[0]).encode() + b"\n" + b'{"document": "caf\xe9 ouvert", "question": "q", "answer": "a"}\n')
    (data / "bad_line3.jsonl").write_text(json.dumps(good[0]) + "\n" + json.dumps(good[1]) + "\n{not json\n",
                                          encoding="utf-8")
    (data / "no_answer.csv").write_text("document,question\nThe pool opens at 9.,When does it open?\n"
                                        "Closed Mondays.,When is it closed?\nFree entry.,Is it free?\n",
                                        encoding="utf-8")
    (data / "extra_cells.csv").write_text("document,question,answer\nThe pool opens at 9, on weekdays.,When?,9\n",
                                          encoding="utf-8")
    _jsonl(data / "dup_ids.jsonl", [{**row, "id": "q1" if i != 1 else "q2"} for i, row in enumerate(good[:4])])
    _jsonl(data / "squad.jsonl", [{"document": r["document"], "question": r["question"],
                                   "answer": {"text": [r["answer"]], "answer_start": [21]}} for r in good])
    _jsonl(data / "array_line.jsonl", [good[0]])
    with (data / "array_line.jsonl").open("a", encoding="utf-8") as f:
        f.write('["document", "question", "answer"]\n')
    _jsonl(data / "two.jsonl", good[:2])
    _jsonl(data / "empty_answer.jsonl", [good[0], {**good[1], "answer": "  "}, good[2]])
    (data / "notes.txt").write_text("The library opens at 9:00.\n", encoding="utf-8")
    (data / "bad_key.toml").write_text('signature = "inquiry -> department"\nmetrc = "accuracy"\n', encoding="utf-8")
    (data / "bad_field.toml").write_text('signature = "inquiry -> department"\n\n[fields.answr]\ndesc = "x"\n',
                                         encoding="utf-8")
    (data / "bad_space.yaml").write_text("top_k: {low: 4, high: 1}\n", encoding="utf-8")
    # A task whose every input is far longer than the embedded model's context.
    (data / "long_inputs.toml").write_text(
        'name = "long_inputs"\nsignature = "text -> label"\nmax_tokens = 8\n\n[data]\n'
        'train = "long/train.jsonl"\ndev = "long/dev.jsonl"\ntest = "long/test.jsonl"\n', encoding="utf-8")
    for split, first in (("train", 0), ("dev", 10), ("test", 20)):
        _jsonl(data / "long" / f"{split}.jsonl",
               [{"id": f"{split}{i}", "text": _long_text(first + i), "label": "library"} for i in range(2)])


def _compile_run(runs: Path, *, finished: bool) -> Path:
    from smelt.commands.compile import CompileOptions
    from smelt.files import write_json
    from smelt.lifecycle import build_manifest, new_run_dir
    from smelt.programs.registry import get_task

    task = get_task("doc_qa")
    run_dir = new_run_dir("doc_qa", "compile", runs)
    options = dataclasses.asdict(CompileOptions(task="doc_qa", runs_root=str(runs)))
    write_json(run_dir / "manifest.json", build_manifest(
        command="compile", task=task, options=options, seed=0, models={"program": {"spec": "gemma-3-270m"}},
        data_sources={}, program_options=task.default_options(), extra={"metric": "f1"}))
    if finished:
        task.program().save(str(run_dir / "program.json"))
        write_json(run_dir / "summary.json", {"task": "doc_qa", "command": "compile", "metric": "f1"})
        (run_dir / "report.md").write_text("# compile doc_qa\n", encoding="utf-8")
    return run_dir


def _eval_run(runs: Path, program_run: Path) -> Path:
    from smelt.commands.evaluate_run import EvalOptions
    from smelt.files import write_json
    from smelt.lifecycle import build_manifest, new_run_dir
    from smelt.programs.registry import get_task

    task = get_task("doc_qa")
    run_dir = new_run_dir("doc_qa", "eval", runs)
    write_json(run_dir / "manifest.json", build_manifest(
        command="eval", task=task, options=dataclasses.asdict(EvalOptions(program=str(program_run))), seed=0,
        models={"program": {"spec": "gemma-3-270m"}}, data_sources={}, program_options=task.default_options(),
        extra={"program_run": str(program_run), "metric": "f1", "split": "test"}))
    write_json(run_dir / "summary.json", {"task": "doc_qa", "command": "eval", "program_run": str(program_run)})
    (run_dir / "report.md").write_text("# eval\n", encoding="utf-8")
    return run_dir


def _distill_run_with_foreign_adapter(runs: Path, teacher: Path) -> Path:
    """A finished distill run whose adapter was trained on another base model (a tiny random Llama)."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    from smelt.commands.distill import DistillOptions
    from smelt.files import write_json
    from smelt.lifecycle import build_manifest, new_run_dir
    from smelt.programs.registry import get_task

    task = get_task("doc_qa")
    run_dir = new_run_dir("doc_qa", "distill", runs)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=2, vocab_size=300)
    with warnings.catch_warnings():  # peft reads a transformers property that warns it is renamed
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(transformers.LlamaForCausalLM(config),
                               LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
        model.save_pretrained(str(run_dir / "adapter"))
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    options = DistillOptions(student="gemma-3-270m", teacher=str(teacher), task="doc_qa", runs_root=str(runs))
    student = {"spec": "gemma-3-270m", "kind": "embedded", "target": "gemma-3-270m", "adapter": "adapter",
               "instructions": False}
    write_json(run_dir / "manifest.json", build_manifest(
        command="distill", task=task, options=dataclasses.asdict(options), seed=0,
        models={"program": student, "teacher": {"spec": "gemma-3-270m", "source": f"run {teacher}"}},
        data_sources={}, program_options={**task.default_options(), "predictor": "predict"},
        extra={"metric": "f1"}))
    task.program().save(str(run_dir / "program.json"))
    write_json(run_dir / "summary.json", {"task": "doc_qa", "command": "distill", "metric": "f1"})
    (run_dir / "report.md").write_text("# distill doc_qa\n", encoding="utf-8")
    return run_dir


def build_world(base: Path) -> dict:
    """Runs (finished, unfinished, eval, distill with a foreign adapter) and bad data files under ``base``."""
    runs, data = base / "runs", base / "data"
    data.mkdir()
    _write_data(data)
    done = _compile_run(runs, finished=True)
    undone = _compile_run(runs, finished=False)
    evalrun = _eval_run(runs, done)
    distillrun = _distill_run_with_foreign_adapter(runs, done)
    return {"runs": runs, "data": data, "done": done, "undone": undone, "evalrun": evalrun,
            "distillrun": distillrun, "toml": ROOT / "examples" / "inquiry_routing.toml"}
