"""Sweeps end to end on the real embedded model, on a tiny slice of the shipped data, with the journal storage:
the run directory, the best program reloading and reproducing its score, pruning, and resume after Ctrl-C."""

import json
from pathlib import Path

import optuna
import pytest

from smelt.commands.common import DataOptions
from smelt.commands.evaluate_run import EvalOptions, run_eval
from smelt.commands.sweep import run_sweep
from smelt.commands.sweep_options import SweepOptions, space_for
from smelt.commands.sweep_trials import CompileStage
from smelt.commands.sweep_worker import run_trial
from smelt.lifecycle.reloaded_run import load_run
from smelt.optimizers.sweep.storage import open_storage

TINY = DataOptions(max_train=3, max_dev=3, max_test=2)
CHEAP_SPACE = "optimizer: [none, labeled]\nmax_labeled_demos: {low: 1, high: 2}\ntop_k: {low: 1, high: 2}\n"


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def options(tmp_path, **overrides) -> SweepOptions:
    space = tmp_path / "space.yaml"
    space.write_text(CHEAP_SPACE, encoding="utf-8")
    return SweepOptions(**{"task": "doc_qa", "trials": 3, "space": str(space), "threads": 2, "data": TINY,
                           "runs_root": str(tmp_path / "runs"), "latency_sample": 1, "cache": False, **overrides})


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    return run_sweep(options(tmp_path_factory.mktemp("sweep")), log=lambda message: None)


def test_sweep_run_directory_is_complete(swept):
    run_dir = swept.run_dir
    for name in ("manifest.json", "study.journal", "trials.jsonl", "summary.json", "report.md", "history.png",
                 "best/manifest.json", "best/program.json", "best/eval/test.jsonl"):
        assert (run_dir / name).is_file(), name
    trials = read_jsonl(run_dir / "trials.jsonl")
    assert [t["number"] for t in trials] == [0, 1, 2]
    # The default configuration (bootstrap) lies outside this space: it ran beside the study, for the comparison.
    assert not any(t["default"] for t in trials) and (run_dir / "default" / "program.json").is_file()
    for trial in trials:
        assert trial["state"] in ("complete", "pruned")
        assert (run_dir / "trials" / f"trial-{trial['number']:03d}" / "eval" / "dev.jsonl").is_file()
        assert trial["params"]["optimizer"] in ("none", "labeled")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["command"] == "sweep" and manifest["stage"] == "compile"
    assert manifest["space"]["optimizer"] == ["none", "labeled"]
    report = (run_dir / "report.md").read_text()
    assert "Best vs default on test" in report and "| 2 |" in report
    summary = swept.summary
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 3
    assert "default" in summary["test"] and all(s["examples"] == 2 for s in summary["test"].values())


def test_trials_keep_their_run_directory_and_scores_as_json(swept):
    storage = open_storage(None, swept.run_dir)
    study = optuna.load_study(study_name="doc_qa-compile", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    for trial in complete:
        assert trial.user_attrs["run_dir"].endswith(f"trial-{trial.number:03d}")
        assert trial.user_attrs["dev"]["score"] == trial.value
        assert json.loads(trial.user_attrs["program"])  # the program as DSPy JSON, never a pickle


def test_best_program_reloads_and_eval_reproduces_its_test_score(swept, tmp_path):
    best = swept.summary["best"][0]
    loaded = load_run(swept.run_dir)  # a sweep stands for its best trial
    assert json.loads((loaded.run_dir / "manifest.json").read_text())["sweep_trial"] == best["number"]
    _, summary, _ = run_eval(EvalOptions(program=str(swept.run_dir), split="test", threads=2, data=TINY,
                                         runs_root=str(tmp_path), latency_sample=0), log=lambda message: None)
    label = next(label for label in swept.summary["test"] if label.startswith(f"trial {best['number']} "))
    assert summary["test"]["score"] == swept.summary["test"][label]["score"]


def test_pruning_stops_a_hopeless_trial(tmp_path):
    opts = options(tmp_path, data=DataOptions(max_train=2, max_dev=6), threads=1)
    stage = CompileStage(opts, cache=False, log=lambda message: None)
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    for _ in range(2):  # two finished trials whose running score (2.0) no real trial can reach
        study.add_trial(optuna.trial.create_trial(value=2.0, intermediate_values={step: 2.0 for step in range(1, 7)}))
    trial = study.ask()
    run_trial(trial, study, stage, space_for(opts), opts, tmp_path / "sweep", log=lambda message: None)
    frozen = study.trials[-1]
    assert frozen.state == optuna.trial.TrialState.PRUNED
    scored = frozen.user_attrs["dev_examples_scored"]
    assert scored == 1  # pruned at the first step the warm-up allows
    assert len(read_jsonl(tmp_path / "sweep" / "trials" / f"trial-{trial.number:03d}" / "eval" / "dev.jsonl")) < 6


def test_resume_after_ctrl_c_finishes_the_study(tmp_path, monkeypatch):
    import smelt.lifecycle.run as trials_module  # every trial scores its dev split through Run.score

    real_evaluate = trials_module.evaluate

    def interrupted_on_trial_1(*args, **kwargs):
        if kwargs.get("desc") == "trial 1 dev":
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(trials_module, "evaluate", interrupted_on_trial_1)
    opts = options(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(opts, log=lambda message: None)
    (run_dir,) = (tmp_path / "runs" / "doc_qa").iterdir()
    before = read_jsonl(run_dir / "trials.jsonl")
    assert before[0]["state"] == "complete"
    assert before[1]["state"] == "fail" and before[1]["interrupted"]
    assert not (run_dir / "summary.json").exists()

    monkeypatch.setattr(trials_module, "evaluate", real_evaluate)
    # The recorded options are used: the new command line only says where to resume and how many trials.
    resumed = run_sweep(SweepOptions(resume=str(run_dir), trials=3), log=lambda message: None)
    assert resumed.run_dir == run_dir
    after = read_jsonl(run_dir / "trials.jsonl")
    assert after[0] == before[0]  # finished work is kept, not redone
    assert sum(t["state"] in ("complete", "pruned") for t in after) == 3
    assert resumed.summary["trials"]["fail"] == 1


def test_two_worker_processes_share_the_journal_study(tmp_path):
    opts = options(tmp_path, trials=2, workers=2, threads=1, data=DataOptions(max_train=2, max_dev=2, max_test=1))
    result = run_sweep(opts, log=lambda message: None)
    trials = read_jsonl(result.run_dir / "trials.jsonl")
    assert [t["number"] for t in trials] == [0, 1]
    assert all(t["state"] in ("complete", "pruned") for t in trials)
    assert (result.run_dir / "best" / "program.json").is_file()


def test_a_task_files_compile_table_is_the_default_trial(tmp_path):
    """examples/inquiry_routing.toml says optimizer = "labeled", max_labeled_demos = 6: the sweep's default trial is
    the compile that `compile examples/inquiry_routing.toml` makes, not smelt's own defaults (bootstrap, 4)."""
    task_file = Path(__file__).resolve().parents[1] / "examples" / "inquiry_routing.toml"
    space = tmp_path / "labels.yaml"
    space.write_text("optimizer: [none, labeled]\nmax_labeled_demos: {low: 1, high: 6}\n", encoding="utf-8")
    swept = run_sweep(options(tmp_path, task=str(task_file), trials=2, space=str(space),
                              data=DataOptions(max_train=24, max_dev=2, max_test=2)), log=lambda message: None)
    trials = read_jsonl(swept.run_dir / "trials.jsonl")
    [default] = [t for t in trials if t["default"]]
    assert (default["params"]["optimizer"], default["params"]["max_labeled_demos"]) == ("labeled", 6)
    program = json.loads((swept.run_dir / "trials" / f"trial-{default['number']:03d}" / "program.json").read_text())
    demos = [demo for name, predictor in program.items() if name != "metadata" for demo in predictor["demos"]]
    assert len(demos) == 6 and len({demo["department"] for demo in demos}) == 6  # one of each label, as compile
    assert "default" in "".join(swept.summary["test"])
