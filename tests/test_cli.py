"""The command line: fast --help, and one clear line (exit 2, no traceback) for each mistake a user can make."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def smelt(*args: str, cwd: Path = ROOT, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=cwd, capture_output=True, text=True,
                          input=stdin, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_does_not_import_heavy_libraries():
    code = "import sys; sys.argv=['cli.py','--help']; import cli\n" \
           "try:\n    cli.cli()\nexcept SystemExit:\n    pass\n" \
           "print(sorted(m for m in ('torch','dspy','transformers','peft') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "compile" in out.stdout and "distill" in out.stdout


@pytest.mark.parametrize("command", ["compile", "eval", "run", "distill", "sweep", "tasks", "models"])
def test_every_command_explains_its_options(command):
    result = smelt(command, "--help")
    assert result.returncode == 0
    assert "Usage:" in result.stdout


def test_every_option_has_help_text():
    import click

    import cli

    for name, command in cli.cli.commands.items():
        silent = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
        assert not silent, f"{name}: {silent}"


def test_tasks_lists_doc_qa():
    result = smelt("tasks")
    assert result.returncode == 0 and "doc_qa" in result.stdout


def test_unknown_task():
    assert_one_line_error(smelt("compile", "no_such_task"), "unknown task 'no_such_task'", "doc_qa")


def test_unknown_model_alias():
    assert_one_line_error(smelt("compile", "doc_qa", "--lm", "llama-9"), "--lm 'llama-9'", "unknown model")


def test_judge_metric_without_judge():
    assert_one_line_error(smelt("compile", "doc_qa", "--metric", "judge"), "--metric judge", "--judge")


def test_negative_latency_sample():
    assert_one_line_error(smelt("compile", "doc_qa", "--latency-sample", "-1"), "--latency-sample must be 0 or more")


def test_bad_cpu_dtype(monkeypatch):
    monkeypatch.setenv("SMELT_CPU_DTYPE", "fp8")
    assert_one_line_error(smelt("compile", "doc_qa", "--device", "cpu", "--max-test", "1"),
                          "SMELT_CPU_DTYPE=fp8", "float32, bfloat16")


def test_cuda_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # the error under test only exists without one
    assert_one_line_error(smelt("compile", "doc_qa", "--device", "cuda"), "--device cuda", "--device cpu")


def test_missing_data_file(tmp_path):
    assert_one_line_error(smelt("compile", "doc_qa", "--data", str(tmp_path / "nope.jsonl")), "nope.jsonl")


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    data = tmp_path / "qa.jsonl"
    good = {"document": "d", "question": "q", "answer": "a"}
    data.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n{not json\n", encoding="utf-8")
    assert_one_line_error(smelt("compile", "doc_qa", "--data", str(data)), f"{data}:3:")


def test_missing_field_suggests_mapping(tmp_path):
    data = tmp_path / "qa.jsonl"
    rows = [{"document": "d", "question": "q", "gold": "a"}] * 3
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert_one_line_error(smelt("compile", "doc_qa", "--data", str(data)), ":1:", "answer", "--field")


def test_eval_of_a_folder_that_is_not_a_run(tmp_path):
    assert_one_line_error(smelt("eval", "doc_qa", "--program", str(tmp_path)), "manifest.json")


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    assert_one_line_error(smelt("compile", "doc_qa", "--resume", str(tmp_path), "--max-dev", "1"), "manifest.json")


def test_distill_student_must_be_in_process():
    assert_one_line_error(smelt("distill", "doc_qa", "--student", "openai/gpt-4o-mini", "--teacher", "gemma-3-270m"),
                          "--student", "in-process")


def test_run_with_missing_document(tmp_path):
    assert_one_line_error(smelt("run", "doc_qa", "--program", str(tmp_path), "--document", str(tmp_path / "x.txt"),
                                "--question", "q"), "document=@", "x.txt", "no such file")


def test_program_option_errors_list_the_valid_keys_and_types():
    assert_one_line_error(smelt("compile", "doc_qa", "-o", "topk=3"),
                          "-o topk", "not an option of task doc_qa", "top_k (int)", "predictor (predict | cot)")
    assert_one_line_error(smelt("compile", "doc_qa", "-o", "top_k=three"), "-o top_k=three", "expected int")
    assert_one_line_error(smelt("compile", "doc_qa", "-o", "predictor=tot"), "predictor=tot", "predict | cot")
    assert_one_line_error(smelt("compile", "doc_qa", "-o", "top_k"), "-o 'top_k'", "KEY=VALUE")
    assert_one_line_error(smelt("compile", "doc_qa", "-o", "top_k=0"), "-o top_k=0", "positive")
    # doc_qa's named flags are aliases of -o, so they are checked against the task too.
    assert_one_line_error(smelt("compile", "examples/inquiry_routing.toml", "--placement", "question_first"),
                          "-o placement", "not an option of task inquiry_routing", "max_tokens (int)")


def test_unknown_task_lists_the_forms(tmp_path):
    assert_one_line_error(smelt("compile", "doc_q"), "unknown task 'doc_q'", "doc_qa, rag_qa", ".py:task", ".toml")
    assert_one_line_error(smelt("compile", str(tmp_path / "none.py:task")), "no such file")
    assert_one_line_error(smelt("compile", "json:task"), "json defines no 'task'")
    assert_one_line_error(smelt("compile", str(tmp_path / "none.toml")), "no such task file")


def test_distill_without_task_or_teacher_needs_a_compile_run(tmp_path):
    assert_one_line_error(smelt("distill", "--student", "gemma-3-270m", "--runs-root", str(tmp_path)),
                          "no finished compile run", "python cli.py compile TASK")


def test_distill_without_task_needs_it_for_a_model_teacher(tmp_path):
    assert_one_line_error(smelt("distill", "--student", "gemma-3-270m", "--teacher", "gemma-3-270m"),
                          "name the TASK", "distill doc_qa")


def _fake_run(root: Path, task: str, name: str, finished: bool = True) -> Path:
    run = root / task / name
    run.mkdir(parents=True)
    command = name.split("-")[2]
    (run / "manifest.json").write_text(json.dumps({"command": command, "task": task}))
    if finished:
        (run / "program.json").write_text("{}")
    return run


def test_distill_short_form_takes_the_latest_finished_compile_run(tmp_path):
    from smelt.commands.distill import DistillOptions
    from smelt.commands.teacher import resolve_teacher

    _fake_run(tmp_path, "doc_qa", "20261120-090000-compile")
    latest = _fake_run(tmp_path, "other", "20261121-080000-compile")
    _fake_run(tmp_path, "doc_qa", "20261121-090000-compile", finished=False)  # interrupted: not a teacher
    _fake_run(tmp_path, "doc_qa", "20261121-100000-distill")
    said = []
    resolved = resolve_teacher(DistillOptions(student="gemma-3-270m", runs_root=str(tmp_path)), log=said.append)
    assert (resolved.teacher, resolved.task) == (str(latest), "other")
    assert str(latest) in said[0]
    of_task = resolve_teacher(DistillOptions(student="gemma-3-270m", task="doc_qa", runs_root=str(tmp_path)),
                              log=said.append)
    assert of_task.teacher == str(tmp_path / "doc_qa" / "20261120-090000-compile") and of_task.task == "doc_qa"


@pytest.mark.parametrize("args, fragments", [
    (["--stage", "train"], ["--stage 'train'", "compile or distill"]),
    (["--objective", "score,cost"], ["unknown objective 'cost'", "prompt_tokens"]),
    (["--objective", "latency"], ["--objective latency", "score,latency"]),
    (["--trials", "0"], ["--trials must be 1 or more"]),
    (["--storage", "mysql://root@localhost/x"], ["--storage mysql://root@localhost/x", "postgresql://"]),
    (["--storage", "sqlite:///study.db", "--workers", "2"], ["sqlite", "not safe for several workers"]),
    (["--space", "nowhere.yaml"], ["--space nowhere.yaml: no such file"]),
])
def test_sweep_mistakes_are_one_line(args, fragments):
    assert_one_line_error(smelt("sweep", "doc_qa", *args), *fragments)


def test_sweep_bad_space_file_names_the_key(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("top_k: {low: 4, high: 1}\n", encoding="utf-8")
    assert_one_line_error(smelt("sweep", "doc_qa", "--space", str(space)), str(space), "top_k: low 4 is above high 1")


def test_sweep_storage_errors_never_echo_the_password():
    result = smelt("sweep", "doc_qa", "--storage", "postgresql://postgres:s3cret@127.0.0.1:1/nowhere")
    assert_one_line_error(result, "cannot open the study storage", "postgres:***@127.0.0.1:1")
    assert "s3cret" not in result.stderr + result.stdout


def test_sweep_shows_its_space():
    result = smelt("sweep", "doc_qa", "--show-space", "--stage", "distill")
    assert result.returncode == 0
    assert "learning_rate" in result.stdout and "(log)" in result.stdout
