"""A run directory is data: its program.json, manifest and task never run code, choose a model, or lose a run.

Through the real CLI (the shared check of ``mistakes.py``: one `error:` line, no traceback, runs untouched), with
a real OpenAI-compatible server on loopback where a model is called, and real file systems (tmpfs, full or
read-only) where the disk is what fails.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from chat_stub import ChatStub
from mistakes import CLI, ENV, run_mistake

ANSWER = "[[ ## answer ## ]]\n9:00\n\n[[ ## completed ## ]]"


# ---------------------------------------------------------------------------- a model server that keeps what it saw


@pytest.fixture
def model_server():
    with ChatStub(ANSWER) as stub:
        yield stub


# ---------------------------------------------------------------------------- runs to hand in


def _run(runs: Path, *, task_spec: str = "doc_qa", spec: str = "gemma-3-270m", finished: bool = True,
         records: list[dict] | None = None) -> Path:
    """A compile run of ``task_spec`` on model ``spec``, as `compile` writes it (manifest, program.json, summary,
    eval/test.jsonl from ``records``)."""
    from smelt.commands.compile import CompileOptions
    from smelt.files import write_json
    from smelt.lifecycle import build_manifest, new_run_dir
    from smelt.programs.registry import get_task

    task = get_task(task_spec)
    run_dir = new_run_dir(task.name, "compile", runs)
    options = dataclasses.asdict(CompileOptions(task=task_spec, lm=spec, runs_root=str(runs)))
    write_json(run_dir / "manifest.json", build_manifest(
        command="compile", task=task, options=options, seed=0, models={"program": {"spec": spec}},
        data_sources={}, program_options=task.default_options(), extra={"metric": "f1"}))
    task.program().save(str(run_dir / "program.json"))
    if records is not None:
        (run_dir / "eval" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    if finished:
        write_json(run_dir / "summary.json", {"task": task.name, "command": "compile", "metric": "f1",
                                              "optimizer": "none", "lm": spec})
    return run_dir


def _edit_program(run_dir: Path, change) -> None:
    path = run_dir / "program.json"
    state = json.loads(path.read_text(encoding="utf-8"))
    change(state)
    path.write_text(json.dumps(state), encoding="utf-8")


EVIL_LM = {"model": "openai/evil-exfil", "api_base": "https://exfil.example/v1", "model_type": "chat",
           "temperature": 1.5, "max_tokens": 4000, "cache": False, "num_retries": 0}


# ---------------------------------------------------------------------------- program.json chooses nothing


def test_saved_lm_in_program_json_is_dropped_and_the_runs_model_is_called(tmp_path, model_server):
    """Issue: a predictor's saved `lm` made `run` call openai/evil-exfil instead of the run's model."""
    run_dir = _run(tmp_path / "runs", spec="openai/local-model")
    _edit_program(run_dir, lambda s: s["answer"].update(lm=EVIL_LM))
    before = (run_dir / "program.json").read_bytes()
    env = {**ENV, "OPENAI_API_KEY": "sk-local-test"}
    question = f"When does pool {uuid.uuid4().hex[:8]} open?"  # never in DSPy's response cache
    result = subprocess.run(
        [sys.executable, str(CLI), "run", "--program", str(run_dir), "-i", "document=The pool opens at 9:00.",
         "-i", f"question={question}", "--api-base", model_server.url],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "9:00"
    assert model_server.models and set(model_server.models) == {"local-model"}, model_server.models
    assert "ignored the saved model settings (lm)" in result.stderr
    assert "evil" not in result.stderr + result.stdout  # what was dropped is not echoed either
    assert (run_dir / "program.json").read_bytes() == before


def test_load_program_file_drops_lm_and_keeps_prompts(tmp_path):
    from smelt.programs.program_file import load_program_file
    from smelt.programs.registry import get_task

    task = get_task("doc_qa")
    saved = task.program()
    saved.answer.signature = saved.answer.signature.with_instructions("Answer in one phrase.")
    saved.save(str(tmp_path / "program.json"))
    _edit_program(tmp_path, lambda s: s["answer"].update(lm=EVIL_LM))
    heard = []
    program = load_program_file(task.program(), tmp_path / "program.json", task_name="doc_qa", log=heard.append)
    assert program.answer.lm is None
    assert program.answer.signature.instructions == "Answer in one phrase."
    assert len(heard) == 1 and "'answer'" not in heard[0] and "answer" in heard[0]


PROGRAM_CASES = [
    # (id, how program.json is changed, key words of the error)
    ("config-key", lambda s: s["answer"].update(config={"api_base": "https://exfil.example/v1", "n": 50}),
     ["program.json", "predictor 'answer'", "unknown key 'config'", "prompts and demos only"]),
    ("callbacks-key", lambda s: s["answer"].update(callbacks=["os.system"]),
     ["program.json", "unknown key 'callbacks'"]),
    ("demos-not-objects", lambda s: s["answer"].update(demos=["rm -rf /"]),
     ["program.json", "every demo must be a JSON object"]),
    ("signature-garbage", lambda s: s["answer"].update(signature="x"),
     ["program.json", "signature must hold instructions"]),
    ("extra-predictor", lambda s: s.update(helper=s["answer"]),
     ["program.json", "its predictors (answer, helper)", "task doc_qa", "pass a run of task doc_qa"]),
    # Per-output settings (DSPy's `fields`) saved for an output the task's signature does not have.
    ("saved-fields-of-another-signature", lambda s: s["answer"].update(fields={"department": {"threshold": 0.5}}),
     ["program.json", "predictor 'answer'", "saved fields (department) no longer match the signature",
      "outputs: answer"]),
]


@pytest.mark.parametrize("change, fragments", [pytest.param(c, f, id=i) for i, c, f in PROGRAM_CASES])
def test_program_json_beyond_prompts_and_demos_is_refused(world, tmp_path, change, fragments):
    run_dir = _run(world["runs"], spec="openai/local-model")
    _edit_program(run_dir, change)
    run_mistake(world, tmp_path / "work", ["eval", "--program", str(run_dir), "--api-base", "http://127.0.0.1:9/v1"],
                fragments)


def test_program_json_of_another_task_names_both(world, tmp_path):
    """Issue: a rag_qa program.json in a doc_qa run read `KeyError: 'answer'`."""
    from smelt.programs.registry import get_task

    run_dir = _run(world["runs"])
    get_task("rag_qa").program().save(str(run_dir / "program.json"))
    run_mistake(world, tmp_path / "work", ["eval", "--program", str(run_dir)],
                ["program.json", "saved from another task's program", "Passages, Question, Cited Answer",
                 "task doc_qa's: Document, Question, Answer"])


@pytest.mark.parametrize("content, fragments", [
    pytest.param(b"\x80\x04\x95pickle", ["program.json", "not a DSPy JSON program", "never pickles"], id="pickle"),
    pytest.param(b"[1, 2]", ["program.json", "not a DSPy JSON program", "list"], id="json-list"),
    pytest.param(b'{"answer": {\n"demos": ' + b"[" * 100_000, ["program.json:2", "nested too deeply"],
                 id="nested-too-deeply"),
])
def test_program_json_that_is_not_a_program(world, tmp_path, content, fragments):
    run_dir = _run(world["runs"])
    (run_dir / "program.json").write_bytes(content)
    run_mistake(world, tmp_path / "work", ["run", "--program", str(run_dir), "-i", "document=d", "-i", "question=q"],
                fragments)


# ---------------------------------------------------------------------------- a manifest never runs code


def _python_task(folder: Path, marker: Path) -> Path:
    """A user's Python task that leaves ``marker`` behind whenever it is imported."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "my_task.py"
    path.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
                    "from smelt.programs.doc_qa import task\n", encoding="utf-8")
    return path


def _run_of_python_task(runs: Path, tmp_path: Path, marker: Path) -> tuple[Path, Path]:
    task_file = _python_task(tmp_path / "code", marker)
    run_dir = _run(runs, task_spec=f"{task_file}:task")
    marker.unlink()  # building the run imported it; from here on nothing may
    return run_dir, task_file


@pytest.mark.parametrize("command", ["eval", "run", "distill", "resume", "serve"])
def test_a_runs_python_task_is_not_imported_unless_named(world, tmp_path, command):
    marker = tmp_path / "imported.txt"
    run_dir, task_file = _run_of_python_task(world["runs"], tmp_path, marker)
    args, option = {
        "eval": (["eval", "--program", str(run_dir)], "--program"),
        "run": (["run", "--program", str(run_dir), "-i", "document=d", "-i", "question=q"], "--program"),
        "distill": (["distill", "--student", "gemma-3-270m", "--teacher", str(run_dir)],
                    "--student gemma-3-270m --teacher"),
        "resume": (["compile", "--resume", str(run_dir)], "--resume"),
        "serve": (["serve", str(run_dir), "--port", "0"], None),
    }[command]
    if command == "resume":
        (run_dir / "summary.json").unlink()  # an unfinished run
    shown = "compile" if command == "resume" else command
    how = (f"python cli.py serve {run_dir} --task {task_file}:task" if command == "serve"
           else f"python cli.py {shown} {task_file}:task {option} {run_dir}")
    run_mistake(world, tmp_path / "work", args,
                ["its task is Python code", f"{task_file}:task", "never runs by itself", how])
    assert not marker.exists(), "the run's Python task was imported"


def test_a_python_task_named_by_the_user_loads(tmp_path):
    from smelt.lifecycle import read_manifest
    from smelt.lifecycle.recorded_task import task_of_run

    marker = tmp_path / "imported.txt"
    run_dir, task_file = _run_of_python_task(tmp_path / "runs", tmp_path, marker)
    task = task_of_run(read_manifest(run_dir), run_dir, given=f"{task_file}:task", command="eval", option="--program")
    assert task.name == "doc_qa" and task.source == f"{task_file}:task"


def test_a_task_file_changed_since_the_run_is_named(world, tmp_path):
    task_file = tmp_path / "routing.toml"
    shutil.copy(world["toml"], task_file)
    shutil.copytree(world["toml"].parent / "inquiry_routing", tmp_path / "inquiry_routing")
    run_dir = _run(world["runs"], task_spec=str(task_file))
    task_file.write_text(task_file.read_text(encoding="utf-8").replace("inquiry -> department",
                                                                       "message -> department"), encoding="utf-8")
    for args in (["eval", "--program", str(run_dir)], ["run", "--program", str(run_dir), "-i", "message=x"]):
        run_mistake(world, tmp_path / "work", args, [str(task_file), "changed since", str(run_dir), "sha256",
                                                     "restore the file"])


def test_a_manifest_that_is_not_an_object(world, tmp_path):
    run_dir = _run(world["runs"], finished=False)
    (run_dir / "manifest.json").write_text("[]", encoding="utf-8")
    for args in (["compile", "--resume", str(run_dir)], ["eval", "--program", str(run_dir)]):
        run_mistake(world, tmp_path / "work", args, [f"{run_dir}/manifest.json", "not a smelt manifest", "list"])


def test_a_manifest_nested_too_deeply(world, tmp_path):
    run_dir = _run(world["runs"])
    (run_dir / "manifest.json").write_text('{"command": "compile",\n"options": ' + "[" * 100_000, encoding="utf-8")
    run_mistake(world, tmp_path / "work", ["eval", "--program", str(run_dir)],
                [f"{run_dir}/manifest.json:2", "nested too deeply"])


def test_adapter_outside_the_run_is_refused(world, tmp_path):
    run_dir = _run(world["runs"])
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    manifest["models"]["program"]["adapter"] = "../../../elsewhere"
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    run_mistake(world, tmp_path / "work", ["eval", "--program", str(run_dir)],
                ["manifest.json", "adapter '../../../elsewhere'", "not a folder inside the run"])


def test_resume_recreates_a_deleted_eval_folder(tmp_path):
    from smelt.lifecycle import open_run_dir

    run_dir = _run(tmp_path / "runs", finished=False)
    shutil.rmtree(run_dir / "eval")
    assert open_run_dir("doc_qa", "compile", resume=str(run_dir)) == run_dir
    assert (run_dir / "eval").is_dir()


# ---------------------------------------------------------------------------- report writes only where it may


def test_report_never_replaces_a_runs_file(world, tmp_path):
    for target in (world["done"] / "summary.json", world["done"] / "report.md"):
        for force in ([], ["--force"]):
            run_mistake(world, tmp_path / "work", ["report", str(world["done"]), "--out", str(target), *force],
                        [str(target), "a file of run", "never replaces a run's files"])


def test_report_refuses_to_replace_another_file_without_force(world, tmp_path):
    done = _run(world["runs"], records=[{"id": "t1", "score": 1.0, "prediction": {"answer": "9:00"}}])
    notes = tmp_path / "notes.html"
    notes.write_text("<html>my own notes</html>", encoding="utf-8")
    run_mistake(world, tmp_path / "work", ["report", str(done), "--out", str(notes)],
                [str(notes), "not a report smelt wrote", "--force"])
    assert notes.read_text(encoding="utf-8") == "<html>my own notes</html>"
    page = tmp_path / "page.html"
    for _ in range(2):  # a page smelt wrote is replaced without --force
        result = subprocess.run([sys.executable, str(CLI), "report", str(done), "--out", str(page)], cwd=tmp_path,
                                env=ENV, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    forced = subprocess.run([sys.executable, str(CLI), "report", str(done), "--out", str(notes), "--force"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert forced.returncode == 0, forced.stderr
    assert "name='generator' content='smelt'" in notes.read_text(encoding="utf-8")


def test_report_of_a_run_that_answered_nothing(world, tmp_path):
    failed = _run(world["runs"], records=[{"id": f"t{i}", "score": 0.0, "error": "ConnectionError: refused"}
                                          for i in range(3)])
    run_mistake(world, tmp_path / "work", ["report", str(failed), "--out", str(tmp_path / "r.html")],
                [str(failed), "no example was answered", "every model call failed"])
    unfinished = _run(world["runs"], finished=False)
    run_mistake(world, tmp_path / "work", ["report", str(unfinished), "--out", str(tmp_path / "r.html")],
                [str(unfinished), "has not finished", f"python cli.py compile --resume {unfinished}"])


@pytest.mark.parametrize("broken", ['{"id": "t2", "score": 1.0, "predic', "[" * 100_000, '["t2", 1.0]'])
def test_report_names_a_broken_record_line(world, tmp_path, broken):
    """Issue: report skipped a broken line of eval/test.jsonl without a word, reporting fewer examples."""
    run_dir = _run(world["runs"], records=[{"id": "t1", "score": 1.0, "prediction": {"answer": "9:00"}}])
    with (run_dir / "eval" / "test.jsonl").open("a", encoding="utf-8") as records:
        records.write(broken + "\n" + json.dumps({"id": "t3", "score": 0.0, "prediction": {"answer": "8"}}) + "\n")
    run_mistake(world, tmp_path / "work", ["report", str(run_dir), "--out", str(tmp_path / "r.html")],
                [f"{run_dir}/eval/test.jsonl:2", "not a record", "restore the line, or delete it"])


def test_summary_never_holds_nan_or_infinity(tmp_path):
    """Issue: a NaN in summary.json (Python's json writes one) made the server's /v1/program fail."""
    from smelt.eval.reports.run_records import read_json
    from smelt.files import write_json

    write_json(tmp_path / "summary.json", {"test": {"score": float("nan"), "latency_s": [float("inf"), 1.5]},
                                           "metric": "f1", "drift": -float("inf")})
    text = (tmp_path / "summary.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"test": {"score": None, "latency_s": [None, 1.5]}, "metric": "f1", "drift": None}
    (tmp_path / "old.json").write_text('{"test": {"score": NaN, "n": Infinity}, "metric": "f1"}', encoding="utf-8")
    assert read_json(tmp_path / "old.json") == {"test": {"score": None, "n": None}, "metric": "f1"}


# ---------------------------------------------------------------------------- the disk


def _fill(folder: Path, leave_kb: int) -> None:
    """Fill the file system of ``folder`` up to ``leave_kb`` KiB of free space."""
    stats = os.statvfs(folder)
    free = stats.f_bavail * stats.f_frsize - leave_kb * 1024
    if free > 0:
        (folder / "filler").write_bytes(b"\0" * free)


@pytest.mark.parametrize("command", ["compile", "sweep", "eval"])
def test_read_only_runs_root_is_named_before_any_model_loads(world, tmp_path, mount_tmpfs, command):
    read_only = mount_tmpfs("ro", 64, read_only=True)
    args = {"compile": ["compile", "doc_qa"], "sweep": ["sweep", "doc_qa", "--trials", "1"],
            "eval": ["eval", "--program", str(world["done"])]}[command]
    result = run_mistake(world, tmp_path / "work", [*args, "--runs-root", str(read_only / "runs")],
                         [str(read_only), "Read-only file system", "EROFS", "--runs-root"])
    assert result.wall_s < 60


def test_runs_root_that_is_a_file(world, tmp_path):
    a_file = tmp_path / "runs.txt"
    a_file.write_text("not a folder", encoding="utf-8")
    run_mistake(world, tmp_path / "work", ["compile", "doc_qa", "--runs-root", str(a_file)],
                [str(a_file), "Not a directory", "ENOTDIR", "--runs-root as a folder"])
    assert a_file.read_text(encoding="utf-8") == "not a folder"


def test_resume_on_a_read_only_file_system(world, tmp_path, mount_tmpfs):
    disk = mount_tmpfs("disk", 256)
    run_dir = _run(disk / "runs", finished=False)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    run_mistake(world, tmp_path / "work", ["compile", "--resume", str(run_dir)],
                [str(run_dir), "Read-only file system", "EROFS"])
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_full_disk_at_the_start(world, tmp_path, mount_tmpfs):
    disk = mount_tmpfs("full", 64)
    _fill(disk, 0)
    run_mistake(world, tmp_path / "work", ["compile", "doc_qa", "--runs-root", str(disk / "runs"),
                                           "--lm", "openai/local-model", "--api-base", "http://127.0.0.1:9/v1"],
                [str(disk / "runs"), "No space left on device", "ENOSPC", "free some space"], allow_new_run=True)


def test_full_disk_mid_eval_keeps_every_whole_line(world, tmp_path, mount_tmpfs, model_server):
    """The disk fills while dev is scored: one line naming the file, the lines written are whole JSON, no
    program.json, and the advice to resume once space is freed."""
    disk = mount_tmpfs("mid", 256)
    _fill(disk, 24)
    env = {**ENV, "OPENAI_API_KEY": "sk-local-test"}
    result = run_mistake(
        world, tmp_path / "work",
        ["compile", "doc_qa", "--runs-root", str(disk / "runs"), "--lm", "openai/local-model", "--api-base",
         model_server.url, "--optimizer", "none", "--latency-sample", "0",
         "--threads", "2", "--no-cache"],
        ["No space left on device", "ENOSPC", "free some space", "what the run wrote is kept", "--resume"],
        allow_new_run=True, env=env)
    [run_dir] = [p for p in (disk / "runs" / "doc_qa").iterdir()]
    assert (run_dir / "manifest.json").is_file() and not (run_dir / "program.json").exists()
    lines = [line for f in (run_dir / "eval").glob("*.jsonl")
             for line in f.read_text("utf-8", errors="replace").splitlines()]
    whole = [line for line in lines if line.strip()]
    assert whole, "nothing was scored before the disk filled; the test's sizes need a look"
    # A line cut by the full disk is dropped (and rewritten) by --resume; every other line is whole JSON.
    assert all(json.loads(line)["id"] for line in whole[:-1])
    assert str(run_dir / "eval") in result.stderr
    assert str(run_dir) in result.stderr


def test_full_disk_while_saving_the_program_leaves_no_program_json(tmp_path, mount_tmpfs):
    from smelt.commands.common import save_program
    from smelt.errors import filesystem_error
    from smelt.programs.registry import get_task

    disk = mount_tmpfs("save", 64)
    _fill(disk, 0)
    program = get_task("doc_qa").program()
    program.answer.signature = program.answer.signature.with_instructions("x" * 200_000)
    with pytest.raises(OSError) as raised:
        save_program(program, disk)
    assert not (disk / "program.json").exists()
    message = str(filesystem_error(raised.value))
    assert "No space left on device (ENOSPC)" in message and "--runs-root" in message
