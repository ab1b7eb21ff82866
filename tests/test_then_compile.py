"""``distill --then-compile`` on the real embedded model: the distilled student's prompt is compiled, dev decides
what is kept, test scores it, and ``eval`` of the run answers with the kept program (demos, adapter, lean prompt)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smelt.commands.then_compile import COMPILED, DISTILLED, kept_label
from smelt.errors import SmeltError
from smelt.eval.reports.run_records import run_sources
from smelt.lifecycle.run_scores import scores_of, served_column
from smelt.optimizers.sweep.space import allowed_names, default_space, load_space, value_check

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--max-train", "4", "--max-dev", "3", "--max-test", "2"]


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def _records(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def _mean_score(path: Path) -> float:
    scores = [r["score"] for r in _records(path).values()]
    return sum(scores) / len(scores)


@pytest.fixture(scope="module")
def then_compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    done = _cli("distill", "doc_qa", "--student", "gemma-3-270m", "--teacher", "gemma-3-270m", "--then-compile",
                "--teacher-attempts", "1", *TINY, "--epochs", "1", "--lora-r", "4", "--batch-size", "2",
                "--threads", "4", "--latency-sample", "0", "--no-cache", "--runs-root", str(root))
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (root / "doc_qa").glob("*-distill")
    return root, run_dir, done.stdout


def test_the_kept_program_follows_the_dev_scores(then_compiled):
    _, run_dir, stdout = then_compiled
    summary = json.loads((run_dir / "summary.json").read_text())
    record = summary["then_compile"]
    distilled, compiled = _mean_score(run_dir / "eval" / "dev.jsonl"), _mean_score(run_dir / "eval" /
                                                                                  "compiled.dev.jsonl")
    assert record["dev"][DISTILLED] == pytest.approx(distilled, abs=1e-4)
    assert record["dev"][COMPILED] == pytest.approx(compiled, abs=1e-4)
    assert record["kept"] == kept_label(distilled, compiled)
    assert f"then-compile: kept the {'distilled+compiled program' if compiled > distilled else 'distilled student'}" \
        in stdout
    assert json.loads((run_dir / "manifest.json").read_text())["options"]["then_compile"] is True

    candidate = json.loads((run_dir / "compiled_student" / "program.json").read_text())
    assert record["demos"] == len(candidate["answer"]["demos"]) > 0
    served = json.loads((run_dir / "program.json").read_text())
    kept_compiled = record["kept"] == COMPILED
    assert served["answer"]["demos"] == (candidate["answer"]["demos"] if kept_compiled else [])
    # Test is scored for what was kept: its own column, its records in eval/test.jsonl.
    assert (COMPILED in summary["test"]) == kept_compiled and DISTILLED in summary["test"]
    assert (run_dir / "eval" / "distilled.test.jsonl").is_file() == kept_compiled
    assert served_column(summary, scores_of(summary)) == record["kept"]
    split, sources = run_sources(run_dir)
    main = next(source for source in sources if source.main)
    assert (split, main.label, main.path.name) == ("test", record["kept"], "test.jsonl")


def test_eval_of_the_run_answers_with_the_kept_program(then_compiled):
    root, run_dir, _ = then_compiled
    # --no-cache: the model answers again, from the prompt eval builds out of the run directory.
    done = _cli("eval", "--program", str(run_dir), "--max-test", "2", "--threads", "4", "--latency-sample", "0",
                "--no-cache", "--runs-root", str(root))
    assert done.returncode == 0, done.stderr[-3000:]
    (eval_dir,) = (root / "doc_qa").glob("*-eval")
    ran, recorded = _records(eval_dir / "eval" / "test.jsonl"), _records(run_dir / "eval" / "test.jsonl")
    assert set(ran) == set(recorded) and len(ran) == 2
    for example_id, record in recorded.items():
        assert not ran[example_id]["cached"] and ran[example_id]["prompt_tokens"] == record["prompt_tokens"] > 0
        assert ran[example_id]["prediction"] == record["prediction"], example_id


def test_the_reloaded_run_is_the_kept_program_on_the_lean_prompt(then_compiled):
    from smelt.lifecycle.reloaded_run import load_run

    _, run_dir, _ = then_compiled
    summary = json.loads((run_dir / "summary.json").read_text())
    loaded = load_run(run_dir, device="cpu", log=lambda message: None)
    (predictor,) = loaded.program.predictors()
    assert len(predictor.demos) == (summary["then_compile"]["demos"] if summary["then_compile"]["kept"] == COMPILED
                                    else 0)
    assert loaded.lm.adapter.instructions is False and loaded.lm.adapter_dir == str(run_dir / "adapter")


def test_then_compile_needs_dev_data(tmp_path):
    done = _cli("distill", "doc_qa", "--student", "gemma-3-270m", "--teacher", "gemma-3-270m", "--then-compile",
                "--max-train", "2", "--max-dev", "0", "--max-test", "1", "--runs-root", str(tmp_path), timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "error: --then-compile: the dev split is empty" in done.stderr
    assert not (tmp_path / "doc_qa").exists()


@pytest.mark.parametrize("distilled, compiled, kept", [
    (0.40, 0.45, COMPILED), (0.40, 0.40, DISTILLED), (0.40, 0.30, DISTILLED), (0.40, None, DISTILLED),
    (None, 0.10, COMPILED),
])
def test_only_a_strictly_better_dev_score_keeps_the_compiled_prompt(distilled, compiled, kept):
    assert kept_label(distilled, compiled) == kept


def test_then_compile_is_a_knob_of_the_distill_sweep(tmp_path):
    base = default_space("distill", {}, capable_model=False)
    assert base.params["then_compile"].value is False  # off by default: a default sweep costs what it did
    path = tmp_path / "space.yaml"
    path.write_text("then_compile: [false, true]\n", encoding="utf-8")
    space = load_space(path, base, allowed_names("distill", {}), value_check("distill"))
    assert space.params["then_compile"].choices == (False, True)
    path.write_text("then_compile: [false, sometimes]\n", encoding="utf-8")
    with pytest.raises(SmeltError, match="then_compile: 'sometimes' is not allowed \\(then_compile is true or false"):
        load_space(path, base, allowed_names("distill", {}), value_check("distill"))
