"""A user's own task through every command, as a user runs them from their own folder with the real CLI and the
embedded model: a TOML task file by the card's short forms (``distill --student X`` finds the compile run and
its task), and a ``path.py:task`` task, which a run never imports by itself: every command names it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_user_tasks import INQUIRIES, PYTHON_TASK, route_toml

CLI = Path(__file__).resolve().parents[1] / "cli.py"
TINY_LORA = ["--epochs", "1", "--batch-size", "2", "--lora-r", "4", "--threads", "2", "--latency-sample", "0"]


def smelt(folder: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(CLI), *args], cwd=folder, capture_output=True, text=True,
                            timeout=600)
    return result


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stdout + result.stderr


def answered_in_one_line(result: subprocess.CompletedProcess) -> None:
    """``run`` printed the one output field's value, or (a tiny adapter's student may write no valid label) said in
    one line that the model's output could not be read: the task, program and adapter were loaded either way."""
    assert "Traceback" not in result.stderr
    if result.returncode == 0:
        assert len(result.stdout.splitlines()) == 1
    else:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
        assert errors[0].startswith("error: the model's output could not be read")


def only_run(folder: Path, command: str) -> Path:
    [run] = sorted(folder.glob(f"runs/*/*-{command}"))
    return run


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("my-project")
    rows = [{"id": f"i{n}", "inquiry": text, "department": label} for n, (text, label) in enumerate(INQUIRIES)]
    for split, part in (("train", rows[:4]), ("dev", rows[4:5]), ("test", rows[5:])):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part),
                                               encoding="utf-8")
    return folder


def test_a_task_file_goes_through_every_command_by_the_short_forms(user_folder):
    folder = user_folder / "toml"
    folder.mkdir()
    (folder / "route.toml").write_text(route_toml(".."), encoding="utf-8")
    ok(smelt(folder, "compile", "route.toml", "--optimizer", "labeled", "--threads", "2", "--latency-sample", "0"))
    compiled = only_run(folder, "compile")

    said = ok(smelt(folder, "distill", "--student", "gemma-3-270m", *TINY_LORA))  # the card's short form
    distilled = only_run(folder, "distill")
    assert f"teacher: the latest compile run, runs/toml_router/{compiled.name}" in said
    summary = json.loads((distilled / "summary.json").read_text())
    assert summary["task"] == "toml_router" and summary["sft_examples"] == 4
    assert (distilled / "adapter" / "adapter_model.safetensors").is_file()

    ok(smelt(folder, "eval", "--program", str(distilled), "--threads", "2"))
    evaluated = json.loads((only_run(folder, "eval") / "summary.json").read_text())
    assert evaluated["test"]["examples"] == 1
    answered_in_one_line(smelt(folder, "run", "--program", str(distilled), "-i", "inquiry=A pothole on Route 9."))
    ok(smelt(folder, "report", str(compiled), str(distilled), "--out", "compare.html"))
    assert "toml_router" in (folder / "compare.html").read_text(encoding="utf-8")


def test_a_python_task_goes_through_every_command_when_named(user_folder):
    folder = user_folder / "python"
    folder.mkdir()
    (folder / "my_task.py").write_text(PYTHON_TASK, encoding="utf-8")
    task = "my_task.py:task"
    data = ["--train", "../train.jsonl", "--dev", "../dev.jsonl", "--test", "../test.jsonl"]
    ok(smelt(folder, "compile", task, *data, "--optimizer", "labeled", "--threads", "2", "--latency-sample", "0"))
    compiled = only_run(folder, "compile")

    refused = smelt(folder, "distill", "--student", "gemma-3-270m", *data, *TINY_LORA)
    assert refused.returncode == 2 and "its task is Python code" in refused.stderr
    assert f"distill {(folder / 'my_task.py').resolve()}:task" in refused.stderr  # the exact command to run

    said = ok(smelt(folder, "distill", task, "--student", "gemma-3-270m", *data, *TINY_LORA))
    distilled = only_run(folder, "distill")
    assert f"teacher: the latest compile run, runs/my_router/{compiled.name}" in said
    assert json.loads((distilled / "summary.json").read_text())["task"] == "my_router"

    ok(smelt(folder, "eval", task, "--program", str(distilled), *data, "--threads", "2"))
    answered_in_one_line(smelt(folder, "run", task, "--program", str(distilled), "-i",
                               "inquiry=A pothole on Route 9."))
    ok(smelt(folder, "report", str(compiled), str(distilled), "--out", "compare.html"))
