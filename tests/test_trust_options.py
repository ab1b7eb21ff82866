"""Options a user trusts to be checked up front: an optimizer against the train set it gets, every value a sweep's
space can produce, a SQLite storage path, `run`'s inputs, a run's adapter folder, and distill's student and program.
Each mistake ends in one `error: ...` line, in seconds, before any model loads, naming the option or file and what
to do (``run_mistake`` in mistakes.py; the ``world`` fixture is in conftest.py)."""

import shutil
import textwrap

import pytest
from mistakes import ENV, run_mistake

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


# --- distill: a student whose weights cannot be had, or a program with no predictor, is refused before the teacher
# answers a single input (hours with a real teacher) and before a run directory is made


def test_a_student_not_on_this_machine_is_refused_before_the_teacher(world, tmp_path):
    """The card's own short form, offline with nothing cached: refused in a moment, not after the teacher's run."""
    offline = {**ENV, "HF_HUB_CACHE": str(tmp_path / "empty-hub-cache")}
    result = run_mistake(world, tmp_path / "work", ["distill", "--student", "llama-3.2-3b"],
                         ["--student llama-3.2-3b", "not on this machine", "offline (HF_HUB_OFFLINE is set)",
                          "hf download meta-llama/Llama-3.2-3B-Instruct", "hf:/path/to/folder"], env=offline)
    assert result.wall_s < FAST_S, f"took {result.wall_s:.1f}s: checked after the teacher loaded?"
    run_mistake(world, tmp_path / "work", ["distill", "--student", "hf:smelt-tests/not-a-model", "--teacher",
                                           str(world["done"])],
                ["--student hf:smelt-tests/not-a-model", "not on this machine", "hf download smelt-tests/not-a-model"],
                env=offline)
    swept = run_mistake(world, tmp_path / "work", ["sweep", "doc_qa", "--stage", "distill", "--student",
                                                   "hf:smelt-tests/not-a-model", "--teacher", str(world["done"]),
                                                   "--trials", "1"],
                        ["--student hf:smelt-tests/not-a-model", "not on this machine"], env=offline)
    assert swept.wall_s < FAST_S, f"sweep took {swept.wall_s:.1f}s: checked after the teacher loaded?"


@pytest.mark.parametrize("folder, fragments", [
    ("model-without-config", ["no config.json in", "model-without-config"]),
    ("nosuch", ["no such model folder", "nosuch"]),
], ids=["no-config-json", "missing-folder"])
def test_a_student_folder_that_holds_no_model(world, tmp_path, folder, fragments):
    (tmp_path / "model-without-config").mkdir()
    (tmp_path / "model-without-config" / "model.safetensors").write_bytes(b"")
    spec = f"hf:{tmp_path / folder}"
    result = run_mistake(world, tmp_path / "work", ["distill", "--student", spec, "--teacher", str(world["done"])],
                         [f"--student {spec}: ", *fragments])
    assert result.wall_s < FAST_S


def test_a_student_folder_with_a_model_passes_the_check(world, tmp_path):
    """A local folder (config.json there) is no mistake, offline or not: the next mistake is the one reported."""
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    run_mistake(world, tmp_path / "work", ["distill", "--student", f"hf:{folder}", "--teacher", str(world["done"]),
                                           "--min-score", "2"], ["--min-score 2", "between 0 and 1"],
                absent=("--student",))


def test_a_hub_student_is_left_to_download_when_the_hub_answers(monkeypatch):
    """Online, a model not cached yet is the loader's to download; only a hub that cannot be reached is refused."""
    from huggingface_hub import constants

    from smelt.errors import SmeltError
    from smelt.lm import loading
    from smelt.lm.specs import parse_spec

    spec = parse_spec("hf:smelt-tests/not-a-model", "--student")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    asked = []
    monkeypatch.setattr(loading, "_hub_unreachable", lambda hub_id: asked.append(hub_id))
    loading.check_weights_available(spec, "--student")
    assert asked == ["smelt-tests/not-a-model"]
    monkeypatch.setattr(loading, "_hub_unreachable", lambda hub_id: "cannot reach https://huggingface.co: refused")
    with pytest.raises(SmeltError, match="not on this machine .* offline \\(cannot reach https://huggingface.co"):
        loading.check_weights_available(spec, "--student")
    loading.check_weights_available(parse_spec("gemma-3-270m", "--student"), "--student")  # always there


ECHO_TASK = textwrap.dedent('''
    import dspy

    from smelt.programs.task import Task


    class Answer(dspy.Signature):
        """Answer the question about the document."""

        document: str = dspy.InputField()
        question: str = dspy.InputField()
        answer: str = dspy.OutputField()


    class Echo(dspy.Module):
        """Answers with the document itself: no model call, nothing for a student to learn."""

        def __init__(self, options):
            super().__init__()

        def forward(self, document, question):
            return dspy.Prediction(answer=document)


    task = Task(name="echo", description="Echo the document.", signature=Answer, make_program=Echo)
''')


def test_distill_of_a_program_with_no_predictor(world, tmp_path):
    tasks = tmp_path / "tasks"  # outside the watched folders: importing it may write __pycache__ beside it
    tasks.mkdir()
    (tasks / "echo.py").write_text(ECHO_TASK, encoding="utf-8")
    task = f"{tasks / 'echo.py'}:task"
    result = run_mistake(world, tmp_path / "work",
                         ["distill", task, "--student", "gemma-3-270m", "--teacher", "gemma-3-270m", "--data",
                          str(world["data"] / "good.jsonl")],
                         [f"task {task}: ", "(Echo) has no predictors", "dspy.Predict"])
    assert result.wall_s < FAST_S, f"took {result.wall_s:.1f}s: checked after the teacher loaded?"
