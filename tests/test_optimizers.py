"""Plumbing of every optimizer behind compile_program, with DSPy's DummyLM as the model (no quality claims)."""

from types import SimpleNamespace

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from smelt.errors import SmeltError
from smelt.eval.judge import resolve_metric
from smelt.optimizers.prompt import OPTIMIZERS, CompileSettings, compile_program
from smelt.programs.registry import get_task

# One answer that carries every output field the optimizers' own signatures ask for.
ANSWER = {
    "answer": "Monday and Thursday", "reasoning": "r", "proposed_instruction": "Answer briefly.",
    "proposed_prefix_for_output_field": "Answer:", "observations": "o", "summary": "s", "program_description": "p",
    "module_description": "m", "new_instruction": "Answer briefly.", "discussion": "d",
    "module_advice": '{"answer": "Quote the document."}',
}


class DummyResolvedLM:
    spec = SimpleNamespace(raw="dummy")

    def __init__(self):
        self.lm = DummyLM({"": ANSWER}, adapter=dspy.JSONAdapter())  # JSON: what GEPA's proposer reads

    def context(self):
        return dspy.context(lm=self.lm, adapter=dspy.ChatAdapter())


@pytest.fixture(scope="module")
def task_and_train():
    task = get_task("doc_qa")
    return task, task.shipped_data().train[:10]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_every_optimizer_compiles_the_program(name, task_and_train):
    task, train = task_and_train
    program = task.program()
    dspy.configure(max_errors=10**9)
    metric = resolve_metric("f1", task)
    compiled = compile_program(program, name, trainset=train, metric=metric, lm=DummyResolvedLM(),
                               settings=CompileSettings(threads=2))
    assert type(compiled) is type(program) and compiled is not program
    assert len(compiled.predictors()) == len(program.predictors())
    assert not program.predictors()[0].demos  # the baseline is left untouched
    if name in ("labeled", "bootstrap"):
        assert len(compiled.predictors()[0].demos) == 2


def test_unknown_optimizer_and_empty_train(task_and_train):
    task, _ = task_and_train
    program = task.program()
    with pytest.raises(SmeltError, match="--optimizer 'adam'"):
        compile_program(program, "adam", trainset=[1], metric=None, lm=DummyResolvedLM(), settings=CompileSettings())
    with pytest.raises(SmeltError, match="train split is empty"):
        compile_program(program, "bootstrap", trainset=[], metric=None, lm=DummyResolvedLM(),
                        settings=CompileSettings())
