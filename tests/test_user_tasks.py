"""Tasks declared by users, outside the checkout: a Python file (path.py:task) and a TOML task file compile end
to end on the real embedded model (tiny data), are reloaded from their run directory, and answer with `run`."""

import json
import textwrap

import pytest

from smelt.commands.answer import answer
from smelt.commands.common import DataOptions
from smelt.commands.compile import CompileOptions, run_compile
from smelt.errors import SmeltError
from smelt.lifecycle.reloaded_run import load_run

INQUIRIES = [
    ("The streetlight outside 3-4 Kita-machi has been out for a week.", "roads"),
    ("How do I pay the property tax for my late father's house?", "taxes"),
    ("駅前の歩道に大きな穴が開いています。", "roads"),
    ("軽自動車税の納付書をなくしました。", "taxes"),
    ("A tree fell across the path in Minami Park.", "roads"),
    ("When is the resident tax first installment due?", "taxes"),
]

PYTHON_TASK = '''
from dataclasses import dataclass
from typing import Literal

import dspy

from smelt.programs.task import Task


class Route(dspy.Signature):
    """Name the department that handles the inquiry."""

    inquiry: str = dspy.InputField()
    department: Literal["roads", "taxes"] = dspy.OutputField()


@dataclass(frozen=True)
class RouteOptions:
    max_tokens: int = 8


class Router(dspy.Module):
    def __init__(self, options):
        super().__init__()
        self.route = dspy.Predict(Route, max_tokens=options.max_tokens)

    def forward(self, inquiry):
        return self.route(inquiry=inquiry)


task = Task(name="my_router", description="Route an inquiry.", signature=Route, make_program=Router,
            options=RouteOptions)
'''


def route_toml(data_folder: str) -> str:
    """A task file routing an inquiry to roads or taxes, its splits in ``data_folder`` (absolute or relative)."""
    return textwrap.dedent(f'''
        name = "toml_router"
        description = "Route an inquiry."
        signature = "inquiry -> department"
        instructions = "Name the department that handles the inquiry: roads or taxes."
        max_tokens = 6

        [fields.department]
        desc = "the department"
        labels = ["roads", "taxes"]

        [data]
        train = "{data_folder}/train.jsonl"
        dev = "{data_folder}/dev.jsonl"
        test = "{data_folder}/test.jsonl"
    ''')


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user-data")
    rows = [{"id": f"i{n}", "inquiry": text, "department": label} for n, (text, label) in enumerate(INQUIRIES)]
    for split, part in (("train", rows[:2]), ("dev", rows[2:4]), ("test", rows[4:])):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part),
                                               encoding="utf-8")
    return folder


def _compile(task: str, root, data: DataOptions, **program_options):
    options = CompileOptions(task=task, optimizer="labeled", threads=2, runs_root=str(root), data=data,
                             latency_sample=0, program_options=program_options)
    return run_compile(options, log=lambda message: None)


def test_a_python_task_outside_the_checkout_compiles_end_to_end(tmp_path, data_files):
    module = tmp_path / "elsewhere" / "my_task.py"
    module.parent.mkdir()
    module.write_text(PYTHON_TASK, encoding="utf-8")
    data = DataOptions(train=str(data_files / "train.jsonl"), dev=str(data_files / "dev.jsonl"),
                       test=str(data_files / "test.jsonl"))
    outcome = _compile(f"{module}:task", tmp_path / "runs", data, max_tokens=6)

    assert outcome.run_dir.parent.name == "my_router"
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["task"] == "my_router" and manifest["task_source"] == f"{module}:task"
    assert manifest["program_options"] == {"max_tokens": 6, "constrain": True, "choice": "generate"}
    assert len(manifest["data"]["task_file"]["sha256"]) == 64  # the task's own code is fingerprinted
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["metric"] == "accuracy"  # a Literal answer field: labels, so accuracy by default
    record = json.loads((outcome.run_dir / "eval" / "test.jsonl").read_text().splitlines()[0])
    assert set(record["inputs"]) == {"inquiry"} and record["gold"] in ("roads", "taxes")
    assert record["score"] in (0.0, 1.0)
    # Labeled demos are the task's own examples, under its own field names.
    program = json.loads((outcome.run_dir / "program.json").read_text())
    demos = program["route"]["demos"]
    assert len(demos) == 2 and {"inquiry", "department"} <= set(demos[0])

    # A run directory never runs code by itself: its Python task is loaded when the user names it.
    with pytest.raises(SmeltError, match="its task is Python code"):
        load_run(outcome.run_dir)
    loaded = load_run(outcome.run_dir, task_name=f"{module}:task")
    assert loaded.task.name == "my_router" and loaded.task.input_fields == ("inquiry",)
    reply = answer(str(outcome.run_dir), {"inquiry": "A pothole on Route 9."}, task=f"{module}:task", device="cpu")
    assert set(reply) == {"department"}


def test_a_toml_task_compiles_end_to_end(tmp_path, data_files):
    task_file = tmp_path / "route.toml"
    task_file.write_text(route_toml(str(data_files)), encoding="utf-8")
    outcome = _compile(str(task_file), tmp_path / "runs", DataOptions(max_test=1), predictor="predict")

    assert outcome.run_dir.parent.name == "toml_router"
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["metric"] == "accuracy"
    assert summary["compiled"]["test"]["examples"] == 1 and summary["compiled"]["dev"]["examples"] == 2
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["task_source"] == str(task_file)
    assert manifest["program_options"] == {"predictor": "predict", "max_tokens": 6, "constrain": True,
                                           "choice": "generate"}
    assert manifest["data"]["task_file"]["source"] == str(task_file)
    loaded = load_run(outcome.run_dir)
    assert loaded.task.answer_labels == ("roads", "taxes")
    prompt_fields = loaded.program.predictors()[0].signature.output_fields["department"].json_schema_extra
    assert "one of: roads, taxes" in prompt_fields["desc"]
