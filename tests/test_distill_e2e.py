"""Distillation on the real embedded model: the SFT prompt is the inference prompt, and a tiny run completes."""

import contextlib
import json

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

from smelt.commands.answer import answer
from smelt.commands.common import DataOptions
from smelt.commands.distill import DistillOptions, run_distill
from smelt.errors import SmeltError
from smelt.lifecycle.reloaded_run import load_run
from smelt.lm import lm_for_spec
from smelt.optimizers.distill.sft_data import tokenize_sft
from smelt.optimizers.distill.sft_examples import sft_completion, sft_messages
from smelt.programs.registry import get_task

TINY = DataOptions(max_train=4, max_dev=0, max_test=2)
DOCUMENT = "北川市立図書館は毎月第2月曜日が休館日です。開館時間は9時から19時です。"


@pytest.mark.parametrize("instructions", [False, True], ids=["lean prompt", "with instructions"])
def test_sft_prompt_tokens_are_exactly_what_the_student_sends(instructions):
    task = get_task("doc_qa")
    program = task.program()
    example = dspy.Example(document=DOCUMENT, question="休館日はいつですか？", answer="毎月第2月曜日").with_inputs(
        "document", "question")
    # cache=False: every call reaches the engine
    student = lm_for_spec("gemma-3-270m", device="cpu", cache=False, instructions=instructions)
    inputs = dict(task.as_demo(program, example).inputs())
    messages = sft_messages(program, inputs, instructions)
    completion = sft_completion(program.predictors()[0].signature, {"answer": example.answer})
    sft = tokenize_sft(student.engine.tokenizer, messages, completion)

    sent = []
    original = student.engine._submit  # every request reaches the engine's queue here
    student.engine._submit = lambda job: sent.append(job.prompt_ids) or original(job)
    try:
        with student.context(), contextlib.suppress(AdapterParseError):  # the bare base model may answer nothing
            program(document=DOCUMENT, question="休館日はいつですか？")
    finally:
        student.engine._submit = original
    assert sent and sent[0] == sft.prompt_ids
    assert (messages[0]["role"] == "system") == instructions
    assert student.engine.tokenizer.decode(sft.completion_ids).startswith("毎月第2月曜日")


@pytest.fixture(scope="module")
def distilled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    options = DistillOptions(task="doc_qa", student="gemma-3-270m", teacher="gemma-3-270m", threads=4,
                             runs_root=str(root), data=TINY, lora={"epochs": 1, "batch_size": 2, "r": 4},
                             cache=False)  # teacher and bare student send the same prompts here: measure both
    return run_distill(options, log=lambda message: None)


def test_distill_run_directory_is_complete(distilled_run):
    run_dir, summary, table = distilled_run
    for name in ("manifest.json", "program.json", "summary.json", "report.md", "sft.jsonl", "train_log.jsonl",
                 "adapter/adapter_model.safetensors", "adapter/adapter_config.json"):
        assert (run_dir / name).is_file(), name
    rows = [json.loads(line) for line in (run_dir / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 4 and all(r["messages"][-1]["role"] == "assistant" for r in rows)
    assert {r["source"] for r in rows} <= {"teacher", "label"}
    assert all(m["role"] != "system" for r in rows for m in r["messages"])  # the lean student prompt
    assert set(summary["test"]) == {"teacher", "student (no adapter)", "distilled student"}
    for column in summary["test"].values():
        assert column["examples"] == 2 and column["prompt_tokens_per_example"] > 0
        assert column["single_request_examples"] == 2 and column["single_request_latency_s"] > 0
    lean, full = (summary["test"][name]["prompt_tokens_per_example"] for name in ("distilled student", "teacher"))
    assert lean < full  # same passages and question, without DSPy's system message
    assert summary["training"]["steps"] == 2
    assert summary["training"]["trainable_parameters"] < summary["training"]["total_parameters"]
    assert "distilled student" in table
    state = json.loads((run_dir / "program.json").read_text())
    assert not any(p.get("demos") for p in state.values() if isinstance(p, dict))  # zero-shot student


def test_eval_and_run_accept_a_distill_run(distilled_run):
    run_dir, _, _ = distilled_run
    loaded = load_run(run_dir)
    assert loaded.lm.adapter_dir and loaded.lm.lm.model != lm_for_spec("gemma-3-270m").lm.model
    assert loaded.lm.adapter.instructions is False  # the prompt format the adapter was trained on
    reply = answer(str(run_dir), {"document": DOCUMENT, "question": "開館時間は？"}, task="doc_qa")
    assert set(reply) == {"answer"} and isinstance(reply["answer"], str)
    with pytest.raises(SmeltError, match="unknown task 'summarize'"):
        answer(str(run_dir), {"document": DOCUMENT, "question": "開館時間は？"}, task="summarize")
    with pytest.raises(SmeltError, match="--input title: not an input of task doc_qa"):
        answer(str(run_dir), {"document": DOCUMENT, "question": "q", "title": "x"})


def test_a_run_of_another_task_is_refused(distilled_run, tmp_path):
    run_dir, _, _ = distilled_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (tmp_path / "manifest.json").write_text(json.dumps({**manifest, "task": "contract_review"}))
    with pytest.raises(SmeltError, match="a run of task contract_review, not doc_qa"):
        load_run(tmp_path, task_name="doc_qa")
