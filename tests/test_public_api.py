"""The public API (docs/api.md): ``import smelt`` stays light, every name of ``smelt.__all__`` resolves, a task
written against it alone is compiled and distilled by the real CLI on the embedded model and answers through
``smelt.load_run``, and a task file on an old import path still loads, warned once."""

import json
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

import smelt

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "cli.py"

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Egypt", "Cairo"), ("Peru", "Lima"),
            ("Kenya", "Nairobi")]

# Only `smelt` and DSPy: no internal module. Its data: capitals.jsonl beside it, split by seeded_split.
PUBLIC_TASK = '''
from dataclasses import dataclass
from pathlib import Path

import dspy

from smelt import SmeltError, Splits, Task, load_records, register_metric, seeded_split


def same_city(prediction: str, reference: str) -> float:
    """1 when the answer names the reference city."""
    return float(reference.lower() in prediction.lower())


register_metric("same_city", same_city, pass_mark=1.0)


class Capital(dspy.Signature):
    """Name the capital city of the country."""

    country: str = dspy.InputField()
    capital: str = dspy.OutputField()


@dataclass(frozen=True)
class CapitalOptions:
    max_tokens: int = 8


class Capitals(dspy.Module):
    def __init__(self, options):
        super().__init__()
        self.answer = dspy.Predict(Capital, max_tokens=options.max_tokens)

    def forward(self, country):
        return self.answer(country=country)


def load_data() -> Splits:
    path = Path(__file__).with_name("capitals.jsonl")
    rows = [record for _, record in load_records(path)]
    if not rows:
        raise SmeltError(f"{path}: no capitals")
    examples = [dspy.Example(**row).with_inputs("country") for row in rows]
    train, dev, test = seeded_split(examples, seed=0)
    return Splits(train, dev, test, {"train": str(path), "dev": str(path), "test": str(path)})


task = Task(name="capitals", description="Name a country's capital.", signature=Capital, make_program=Capitals,
            options=CapitalOptions, load_data=load_data, metric="same_city")
'''

OLD_PATH_TASK = '''
import dspy

from smelt.eval.datasets import Splits
from smelt.programs.task import Task


class Echo(dspy.Signature):
    """Repeat the word."""

    word: str = dspy.InputField()
    echo: str = dspy.OutputField()


task = Task(name="echo", description="Repeat a word.", signature=Echo, make_program=lambda options: dspy.Predict(Echo),
            load_data=lambda: Splits([], [], [], {}))
'''


def cli(folder: Path, *args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *python_flags, str(CLI), *args], cwd=folder, capture_output=True,
                          text=True, timeout=900)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_import_smelt_loads_neither_torch_nor_dspy():
    code = "import sys, smelt; print(sorted(m for m in ('torch', 'dspy', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_public_name_resolves_and_the_version_is_the_projects():
    assert "__version__" in smelt.__all__ and {"Task", "Splits", "load_run", "register_metric"} <= set(smelt.__all__)
    for name in smelt.__all__:
        assert getattr(smelt, name) is not None, name
    from smelt.programs.datasets import Splits
    from smelt.programs.task import Task

    assert smelt.Task is Task and smelt.Splits is Splits
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert smelt.__version__ == version
    with pytest.raises(AttributeError):
        smelt.no_such_name  # noqa: B018


def test_register_metric_fills_both_tables_and_refuses_a_built_in():
    from smelt.eval.judge import metric_name, resolve_metric
    from smelt.eval.metrics import METRICS
    from smelt.programs.metric_names import METRIC_NAMES, METRICS_DECLARED
    from smelt.programs.registry import get_task

    try:
        smelt.register_metric("starts_alike", lambda p, r: float(p[:1] == r[:1]), pass_mark=1.0)
        assert "starts_alike" in METRIC_NAMES and METRICS_DECLARED["starts_alike"].pass_mark == 1.0
        assert metric_name("starts_alike+grounded", False) == "starts_alike+grounded"
        metric = resolve_metric("starts_alike", get_task("doc_qa"))
        assert metric.pass_mark == 1.0
        import dspy

        assert metric(dspy.Example(answer="Tokyo"), dspy.Prediction(answer="Toronto")) == 1.0
    finally:
        METRICS.pop("starts_alike", None)
        METRICS_DECLARED.pop("starts_alike", None)
    for name, kwargs in (("f1", {}), ("a+grounded", {}), ("x", {"kind": "judge"}), ("x", {"pass_mark": 2})):
        with pytest.raises(smelt.SmeltError, match=r"register_metric"):
            smelt.register_metric(name, len, **kwargs)


def test_scores_of_reads_every_summary_shape():
    from smelt.lifecycle.run_scores import scores_of

    compile_summary = {"command": "compile", "baseline": {"dev": {"score": 0.25}, "test": {"score": 0.5}},
                       "compiled": {"test": {"score": 0.75, "examples": 4}}, "lm": "gemma-3-270m"}
    assert scores_of(compile_summary) == {"baseline": {"dev": 0.25, "test": 0.5}, "compiled": {"test": 0.75}}
    distill_summary = {"command": "distill", "test": {"teacher": {"score": 1}, "distilled student": {"score": 0.5}},
                       "training": {"steps": 2}}
    assert scores_of(distill_summary) == {"teacher": {"test": 1.0}, "distilled student": {"test": 0.5}}
    assert scores_of({"command": "eval", "test": {"score": 0.5}}) == {"eval": {"test": 0.5}}


@pytest.fixture
def forget_same_city():
    yield
    from smelt.eval.metrics import METRICS
    from smelt.programs.metric_names import METRICS_DECLARED

    METRICS.pop("same_city", None)
    METRICS_DECLARED.pop("same_city", None)


def test_a_task_on_the_public_api_compiles_distills_and_answers(tmp_path, forget_same_city):
    (tmp_path / "capitals.py").write_text(PUBLIC_TASK, encoding="utf-8")
    (tmp_path / "capitals.jsonl").write_text(
        "".join(json.dumps({"id": f"c{n}", "country": country, "capital": city}) + "\n"
                for n, (country, city) in enumerate(CAPITALS)), encoding="utf-8")
    task = f"{tmp_path / 'capitals.py'}:task"
    quick = ["--threads", "2", "--latency-sample", "0", "--max-dev", "0", "--max-test", "1"]
    ok(cli(tmp_path, "compile", task, "--optimizer", "none", "--max-train", "0", *quick))
    [compiled] = tmp_path.glob("runs/capitals/*-compile")
    assert json.loads((compiled / "summary.json").read_text())["metric"] == "same_city"

    ok(cli(tmp_path, "distill", task, "--student", "gemma-3-270m", "--teacher", str(compiled), "--max-train", "2",
           "--epochs", "1", "--batch-size", "2", "--lora-r", "4", *quick))
    [distilled] = tmp_path.glob("runs/capitals/*-distill")

    run = smelt.load_run(distilled, task=task, device="cpu")
    assert set(run.predict(country="Japan")) == {"capital"}
    assert isinstance(run.predict(country="Peru")["capital"], str)
    assert set(run.scores["distilled student"]) == {"test"} and 0 <= run.scores["distilled student"]["test"] <= 1
    assert "teacher" in run.scores and run.task.name == "capitals"
    with pytest.raises(smelt.SmeltError, match="'city' is not an input; task capitals takes country="):
        run.predict(city="Lima")
    with pytest.raises(smelt.SmeltError, match=r"its task is Python code .*task="):
        smelt.load_run(distilled)


def test_a_task_file_on_the_old_import_path_loads_warned_once(tmp_path):
    (tmp_path / "old_task.py").write_text(OLD_PATH_TASK, encoding="utf-8")
    # The task loads (the bad -o is refused after it, listing the task's options) and nothing runs a model.
    result = cli(tmp_path, "compile", "old_task.py:task", "-o", "nosuch=1",
                 python_flags=("-W", "always::DeprecationWarning"))
    assert "Traceback" not in result.stderr and "No module named" not in result.stderr, result.stderr[-3000:]
    assert "-o nosuch: not an option of task echo" in result.stderr, result.stderr[-3000:]
    moved = [line for line in result.stderr.splitlines() if "moved to smelt.programs.datasets" in line]
    assert len(moved) == 1 and "DeprecationWarning" in moved[0] and "old_task.py" in moved[0]


def test_every_shim_re_exports_its_new_module_and_warns_once():
    code = textwrap.dedent("""
        import importlib, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for name in ("datasets", "text", "citations"):
                old = importlib.import_module(f"smelt.eval.{name}")
                new = importlib.import_module(f"smelt.programs.{name}")
                importlib.import_module(f"smelt.eval.{name}")  # imported again: no second warning
                public = [n for n in vars(new) if not n.startswith("__")]
                assert all(getattr(old, n) is getattr(new, n) for n in public), name
        for warning in caught:
            print(warning.category.__name__, warning.message)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "smelt.eval." in line]
    assert [line.split()[1] for line in lines] == ["smelt.eval.datasets", "smelt.eval.text", "smelt.eval.citations"]
    assert all(line.startswith("DeprecationWarning") and "goes away in 0.3" in line for line in lines)
    assert "smelt.programs.datasets" in lines[0]
