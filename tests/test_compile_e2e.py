"""End to end on the real embedded model, on a tiny slice of the shipped data: compile, reload, eval, resume."""

import json

import pytest

from smelt.commands.common import DataOptions
from smelt.commands.compile import CompileOptions, run_compile
from smelt.commands.evaluate_run import EvalOptions, run_eval
from smelt.lifecycle.reloaded_run import load_run

TINY = DataOptions(max_train=3, max_dev=2, max_test=2)


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    options = CompileOptions(task="doc_qa", optimizer="bootstrap", threads=4, runs_root=str(root), data=TINY)
    return run_compile(options, log=lambda message: None)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_directory_is_complete(compiled_run):
    run_dir = compiled_run.run_dir
    assert run_dir.parent.name == "doc_qa" and run_dir.name.endswith("-compile")
    for name in ("manifest.json", "program.json", "summary.json", "report.md"):
        assert (run_dir / name).is_file(), name
    for name in ("baseline.dev", "baseline.test", "dev", "test"):
        records = read_jsonl(run_dir / "eval" / f"{name}.jsonl")
        assert len(records) == 2
        for record in records:
            assert {"id", "inputs", "gold", "prediction", "score", "latency_s", "prompt_tokens"} <= record.keys()
            assert 0.0 <= record["score"] <= 1.0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["models"]["program"]["spec"] == "gemma-3-270m"
    assert all(len(entry["sha256"]) == 64 for entry in manifest["data"].values())
    assert manifest["versions"]["dspy"] and manifest["program_options"]["predictor"] == "predict"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metric"] == "f1"
    for label in ("baseline", "compiled"):
        for split in ("dev", "test"):
            assert summary[label][split]["examples"] == 2
        assert summary[label]["test"]["single_request_latency_s"] > 0  # timed on test only
        assert "single_request_latency_s" not in summary[label]["dev"]
    assert "| score (f1)" in (run_dir / "report.md").read_text()
    assert "baseline test" in compiled_run.table and "compiled test" in compiled_run.table


def test_program_is_dspy_json_and_reloads_with_its_demos(compiled_run):
    state = json.loads((compiled_run.run_dir / "program.json").read_text())
    assert "answer.predict" in state or "answer" in json.dumps(state)
    loaded = load_run(compiled_run.run_dir)
    assert sum(len(p.demos) for p in loaded.program.predictors()) == compiled_run.summary["demos"] > 0


def test_eval_reproduces_the_recorded_score(compiled_run, tmp_path):
    run_dir, summary, _ = run_eval(
        EvalOptions(program=str(compiled_run.run_dir), split="test", threads=4, runs_root=str(tmp_path), data=TINY),
        log=lambda message: None,
    )
    assert summary["test"]["score"] == compiled_run.summary["compiled"]["test"]["score"]
    assert (run_dir / "eval" / "test.jsonl").is_file() and run_dir != compiled_run.run_dir


def test_resume_finishes_an_interrupted_run_without_redoing_work(compiled_run):
    run_dir = compiled_run.run_dir
    test_file = run_dir / "eval" / "test.jsonl"
    first, second = test_file.read_text(encoding="utf-8").splitlines()
    # As if Ctrl-C had struck while the second line was being written.
    test_file.write_text(first + "\n" + second[: len(second) // 2], encoding="utf-8")
    (run_dir / "summary.json").unlink()
    program_before = (run_dir / "program.json").read_text()
    resumed = run_compile(CompileOptions(task="doc_qa", threads=4, resume=str(run_dir), data=TINY),
                          log=lambda message: None)
    assert resumed.run_dir == run_dir
    assert (run_dir / "program.json").read_text() == program_before  # the compile step was not redone
    records = read_jsonl(test_file)
    assert [r["id"] for r in records].count(json.loads(first)["id"]) == 1 and len(records) == 2
    assert resumed.summary["compiled"]["test"]["score"] == compiled_run.summary["compiled"]["test"]["score"]
