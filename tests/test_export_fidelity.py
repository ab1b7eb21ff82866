"""bench/export_fidelity: the program runs as it is, its predictors answered from prompt.json; runs it cannot compare
are refused in one line before anything is exported."""

import pytest
from transformers import AutoTokenizer

from bench.export_fidelity import answering_from_export, main
from smelt.commands.export_prompt import prompt_spec, render
from smelt.errors import SmeltError
from smelt.lm.embedded import embedded_model_dir
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.programs.registry import get_task


def test_each_predictor_call_sends_prompt_json_s_prompt_of_the_inputs_the_program_gives_it():
    task = get_task("doc_qa")
    options = {**task.default_options(), "predictor": "predict"}
    adapter = PrefillChatAdapter(instructions=False)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir())
    spec = prompt_spec(task.program(options), adapter, tokenizer)
    sent = []

    def complete(prompt: str, entry: dict) -> str:
        sent.append((prompt, entry["stop"], entry["max_tokens"]))
        return " Tuesdays and Fridays.\n"

    smelt_program = task.program(options)
    program = answering_from_export(task.program(options), spec, complete)
    example = max(task.shipped_data().test, key=lambda e: len(e.document))  # long: the program picks passages
    prediction = program(**example.inputs())

    passages = smelt_program.passages(example.document, example.question)
    assert len(passages) < len(example.document)
    messages = adapter.format(smelt_program.answer.signature, [], {"document": passages, "question": example.question})
    assert sent == [(render(tokenizer, messages), spec["predictors"]["answer"]["stop"],
                     spec["predictors"]["answer"]["max_tokens"])]
    assert prediction.answer == "Tuesdays and Fridays."


def test_runs_it_cannot_compare_are_refused_in_one_line(world, tmp_path):
    cases = [([str(world["done"])], "a compile run holds prompts, not trained weights"),
             ([str(world["evalrun"])], "an eval run, which holds scores but no program"),
             ([str(tmp_path)], "manifest.json"),
             ([str(world["distillrun"]), "--max", "0"], "--max 0: must be a positive number")]
    for args, fragment in cases:
        with pytest.raises(SmeltError) as refused:
            main(args)
        assert fragment in str(refused.value) and "\n" not in str(refused.value)
