"""A program with several predictors distills: rag_qa with a query-rewrite step (``-o rewrite=true``).

The teacher's trace on each train input gives one SFT example per step, each in that step's own lean prompt; one
adapter learns both; the distilled program runs both steps on the student with the adapter."""

import json

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from smelt.commands.common import DataOptions
from smelt.commands.distill import DistillOptions, run_distill
from smelt.eval.program_trace import recording_trace
from smelt.lifecycle.reloaded_run import load_run
from smelt.optimizers.distill.sft_examples import sft_rows
from smelt.programs.registry import get_task

TASK = get_task("rag_qa")
TINY = DataOptions(max_train=3, max_dev=0, max_test=2)


def test_a_trace_records_each_step_in_order_and_becomes_one_row_per_step():
    program = TASK.program({"rewrite": True})
    assert [name for name, _ in program.named_predictors()] == ["rewrite", "answer"]
    example = TASK.shipped_data().train[0]
    lm = DummyLM([{"search_query": "fee oversized"}, {"cited_answer": f"{example.answer} [{example.citations}]"}])
    with dspy.context(lm=lm), recording_trace(program) as trace:
        program(question=example.question)
    assert [step["predictor"] for step in trace] == ["rewrite", "answer"]
    assert trace[0]["inputs"] == {"question": example.question}
    assert trace[0]["outputs"] == {"search_query": "fee oversized"}
    assert set(trace[1]["inputs"]) == {"passages", "question"} and trace[1]["inputs"]["passages"].startswith("[")

    record = {"id": example.id, "prediction": example.answer, "score": 1.0, "trace": trace}
    rows = sft_rows(TASK, program, [example], [record], min_score=0.5, use_labels=True, instructions=False)
    assert [row["predictor"] for row in rows] == ["rewrite", "answer"]
    assert "[[ ## search_query ## ]]" in rows[0]["messages"][-1]["content"]  # the rewrite's own prompt
    assert rows[0]["completion"].startswith("fee oversized")
    assert "[[ ## passages ## ]]" in rows[1]["messages"][0]["content"]

    failed = {**record, "score": 0.0}  # below --min-score: the gold answer teaches the answer step only
    labelled = sft_rows(TASK, program, [example], [failed], min_score=0.5, use_labels=True, instructions=False)
    assert [(row["predictor"], row["source"]) for row in labelled] == [("answer", "label")]


def test_a_chain_of_thought_teachers_steps_teach_the_plain_student():
    teacher = TASK.program({"rewrite": True, "predictor": "cot"})
    student = TASK.program({"rewrite": True})
    example = TASK.shipped_data().train[0]
    lm = DummyLM([{"reasoning": "r", "search_query": "fee"}, {"reasoning": "r", "cited_answer": "500 yen [r01]"}])
    with dspy.context(lm=lm), recording_trace(teacher) as trace:
        teacher(question=example.question)
    assert [step["predictor"] for step in trace] == ["rewrite", "answer"]  # answer.predict is the student's answer
    rows = sft_rows(TASK, student, [example], [{"id": example.id, "prediction": "500 yen", "score": 1.0,
                                                "trace": trace}], min_score=0.5, use_labels=False, instructions=False)
    assert [row["completion"].split("\n")[0] for row in rows] == ["fee", "500 yen [r01]"]
    assert all("reasoning" not in row["completion"] for row in rows)


@pytest.fixture(scope="module")
def distilled_two_step(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    logged: list[str] = []
    options = DistillOptions(task="rag_qa", student="gemma-3-270m", teacher="gemma-3-270m", threads=4,
                             runs_root=str(root), data=TINY, program_options={"rewrite": True},
                             lora={"epochs": 1, "batch_size": 2, "r": 4}, cache=False)
    return run_distill(options, log=logged.append), logged


def test_two_step_program_distills_into_one_adapter(distilled_two_step):
    (run_dir, summary, _table), logged = distilled_two_step
    rows = [json.loads(line) for line in (run_dir / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    by_step = summary["sft_predictors"]
    assert set(by_step) == {"rewrite", "answer"} and by_step["answer"] == 3  # teacher's or gold, every train input
    assert sum(by_step.values()) == len(rows) == summary["sft_examples"]
    assert any("SFT examples per predictor" in line for line in logged)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["predictors"] == ["rewrite", "answer"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert summary["test"]["distilled student"]["examples"] == 2

    records = [json.loads(line) for line in (run_dir / "eval" / "test.jsonl").read_text().splitlines()]
    assert all([step["predictor"] for step in r["trace"]] == ["rewrite", "answer"]
               for r in records if not r.get("error"))  # the distilled program ran both steps

    loaded = load_run(run_dir, command="run")
    assert [name for name, _ in loaded.program.named_predictors()] == ["rewrite", "answer"]
    assert loaded.lm.adapter_dir and (run_dir / "adapter").samefile(loaded.lm.adapter_dir)
