"""Options a user trusts to be checked up front: an optimizer against the train set it gets, every value a sweep's
space can produce, a SQLite storage path, `run`'s inputs and a run's adapter folder. Each mistake ends in one
`error: ...` line, in seconds, before any model loads, naming the option or file and what to do (``run_mistake``
in mistakes.py; the ``world`` fixture is in conftest.py)."""

import shutil

import pytest
from mistakes import run_mistake

FAST_S = 30  # caught before a model loads: seconds, not the minutes of a baseline


def _space(tmp_path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


# --- an optimizer needs train examples: refused before the baseline is scored, and never with --resume advice


@pytest.mark.parametrize("optimizer, max_train, fragments", [
    ("bootstrap", "0", ["--max-train 0", "optimizer bootstrap needs at least 1 train example", "raise --max-train",
                        "--optimizer none"]),
    ("labeled", "0", ["--max-train 0", "optimizer labeled needs at least 1 train example", "--optimizer none"]),
    ("mipro", "1", ["--max-train 1", "optimizer mipro needs at least 2 train examples", "bootstrap"]),
])
def test_optimizer_without_enough_train_examples(world, tmp_path, optimizer, max_train, fragments):
    result = run_mistake(world, tmp_path / "work",
                         ["compile", "doc_qa", "--optimizer", optimizer, "--max-train", max_train], fragments,
                         absent=("--resume",))
    assert result.wall_s < FAST_S, f"took {result.wall_s:.1f}s: checked after a model loaded?"


def test_sweep_draws_an_optimizer_the_train_set_cannot_feed(world, tmp_path):
    result = run_mistake(world, tmp_path / "work", ["sweep", "doc_qa", "--max-train", "0"],
                         ["--max-train 0", "needs at least 1 train example", "optimizer: [none]"],
                         absent=("--resume",))
    assert result.wall_s < FAST_S


# --- every value a space can produce is checked before the first trial


@pytest.mark.parametrize("text, fragments", [
    ("optimizer: [bootstrap, adam]\n", ["optimizer: 'adam' is not allowed", "use one of none, labeled, bootstrap"]),
    ("top_k: [0, -3]\n", ["top_k: 0 is not allowed", "positive integer"]),
    ("top_k: {low: -1, high: 3}\n", ["top_k: -1 is not allowed", "positive integer"]),  # a range's end
    ("top_k: {low: 1.5, high: 3.5}\n", ["top_k: 1.5 is not allowed", "expected int"]),
    ("placement: [question_last, question_middle]\n", ["placement: 'question_middle' is not allowed",
                                                        "question_first"]),
    ("max_demos: [2, -1]\n", ["max_demos: -1 is not allowed", ">= 0"]),
    ("nosuch: [1, 2]\n", ["unknown parameter 'nosuch'", "allowed:", "top_k"]),
], ids=["optimizer-adam", "top_k-0", "range-low-end", "float-range-for-int", "placement", "max_demos", "unknown"])
def test_a_space_value_no_trial_could_run_with(world, tmp_path, text, fragments):
    space = _space(tmp_path, text)
    result = run_mistake(world, tmp_path / "work", ["sweep", "doc_qa", "--space", space],
                         [f"--space {space}: ", *fragments], absent=("--resume",))
    assert result.wall_s < FAST_S


def test_a_distill_space_value_meets_the_lora_check(world, tmp_path):
    space = _space(tmp_path, "r: [0, 8]\n")
    run_mistake(world, tmp_path / "work",
                ["sweep", "--stage", "distill", "--student", "gemma-3-270m", "--teacher", str(world["done"]),
                 "--space", space], [f"--space {space}: r: 0 is not allowed", "--lora-r must be a positive integer"])


def test_every_trial_failed_is_not_advised_to_resume(tmp_path):
    """A failed trial used its slot: --resume would not run it again, so the advice is a new sweep; trials still
    queued (a --timeout) are what --resume is for."""
    import optuna
    from optuna.trial import TrialState

    from smelt.commands.sweep import _no_trial_finished
    from smelt.lifecycle import directory as runs
    from smelt.optimizers.sweep.queue import ERROR

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    for _ in range(2):
        trial = study.ask()
        trial.set_user_attr(ERROR, "ValueError: no such thing")
        study.tell(trial, state=TrialState.FAIL)
    runs.active_run = ("sweep", tmp_path)
    try:
        message = str(_no_trial_finished(study, 2, tmp_path))
        assert "every trial failed" in message and "no such thing" in message and "as a new run" in message
        assert runs.resume_hint() is None  # the CLI adds no "continue with ... --resume"
        study.enqueue_trial({})
        runs.active_run = ("sweep", tmp_path)
        assert "no trial finished yet" in str(_no_trial_finished(study, 3, tmp_path))
        assert runs.resume_hint() is not None  # the queued trial runs on --resume
    finally:
        runs.active_run = None


# --- SQLite storage: the file and the system's reason, not PostgreSQL's host/user/createdb advice


def test_sqlite_storage_in_a_missing_folder(world, tmp_path):
    folder = tmp_path / "nosuch"
    run_mistake(world, tmp_path / "work", ["sweep", "doc_qa", "--storage", f"sqlite:///{folder}/study.db"],
                [f"{folder}/study.db", f"no such folder {folder}", f"mkdir -p {folder}", "leave --storage out"],
                absent=("createdb", "host", "--resume"))
    assert not folder.exists()


def test_sqlite_storage_in_a_folder_that_is_a_file(world, tmp_path):
    # As root, chmod does not stop a write: a "folder" that is a file fails for everyone.
    file = tmp_path / "notes.txt"
    file.write_text("not a folder\n", encoding="utf-8")
    run_mistake(world, tmp_path / "work", ["sweep", "doc_qa", "--storage", f"sqlite:///{file}/study.db"],
                [f"{file}/study.db", f"{file} is a file, not a folder", "in a folder you can write to"],
                absent=("createdb", "host", "--resume"))
    assert file.read_text(encoding="utf-8") == "not a folder\n"


# --- run's inputs


def test_run_reads_standard_input_once(world, tmp_path):
    run_mistake(world, tmp_path / "work",
                ["run", "--program", str(world["done"]), "-i", "document=@-", "-i", "question=@-"],
                ["--input question=@-", "standard input is already read by --input document=@-", "from a file"],
                stdin="The library opens at 9:00.\n")


def test_run_input_given_twice(world, tmp_path):
    run_mistake(world, tmp_path / "work",
                ["run", "--program", str(world["done"]), "-i", "document=a", "-i", "document=b", "-i", "question=q"],
                ["--input document: given twice; keep one"])


def test_run_input_of_invisible_characters_only(world, tmp_path):
    result = run_mistake(world, tmp_path / "work",
                         ["run", "--program", str(world["done"]), "-i", "document=The pool opens at 9.",
                          "-i", "question=\u200b\u2060\ufeff \u3000"],
                         ["--input question=", "invisible characters", "--input document=... --input question=..."])
    assert result.wall_s < FAST_S


# --- a run's adapter folder holding a pickle


def test_adapter_saved_as_a_pickle_names_the_run_folder(world, tmp_path):
    import torch
    from safetensors.torch import load_file

    run_dir = tmp_path / "pickled" / "doc_qa" / world["distillrun"].name
    shutil.copytree(world["distillrun"], run_dir)
    adapter = run_dir / "adapter"
    torch.save(load_file(adapter / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    result = run_mistake(world, tmp_path / "work",
                         ["run", "--program", str(run_dir), "-i", "document=The pool opens at 9.", "-i",
                          "question=When does it open?"],
                         [f"{adapter}: ", "adapter_model.bin", "safetensors only", "safe_serialization=True"],
                         absent=("--adapter",))
    assert result.wall_s < FAST_S  # refused before the base model is read
