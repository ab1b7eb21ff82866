"""Constrained rows in the in-process engine, on the real embedded model: a constrained answer is the argmax of the
full logits with the pattern's mask, through the greedy screen, drafts and the padded ``generate`` path alike; the
same answers with one request or eight in flight, constrained and free rows side by side; sampling stays inside the
mask; and end to end, a compile of examples/inquiry_routing.toml answers only labels, and ``serve`` gives the answers
its evaluation recorded."""

import json
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from real_server import SmeltServe

from smelt.lm.completion_pattern import completion_pattern_of
from smelt.lm.generation import GenerationSettings, end_token_ids, find_stop
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.lm.rendering import encode_prompt
from smelt.programs.registry import get_task

ROOT = Path(__file__).resolve().parents[1]
INQUIRY = str(ROOT / "examples" / "inquiry_routing.toml")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def request(resolved, task_spec: str, example, constrain: bool = True,
            predictor: str = "predict") -> tuple[list[int], GenerationSettings]:
    """The prompt and settings the task's program sends for ``example`` (no demos), as PrefillChatAdapter makes
    them."""
    task = get_task(task_spec)
    program = task.program({"constrain": constrain, "predictor": predictor})
    [(_, predictor)] = program.named_predictors()
    inputs = {name: example[name] for name in task.input_fields}
    if hasattr(program, "passages"):
        inputs["document"] = program.passages(inputs["document"], inputs["question"])
    adapter = PrefillChatAdapter()
    kwargs = adapter._request(resolved.lm, dict(predictor.config), predictor.signature)
    messages = adapter.format(predictor.signature, [], inputs)
    return (encode_prompt(resolved.engine.tokenizer, messages),
            GenerationSettings(max_new_tokens=kwargs["max_tokens"], stop=tuple(kwargs["stop"]),
                               pattern=completion_pattern_of(kwargs.get("response_format"))))


@pytest.fixture(scope="module")
def requests(embedded_model):
    """Four inquiries (labels) and two doc_qa questions (free text), constrained; the same two questions free."""
    from smelt.lm import lm_for_spec

    resolved = lm_for_spec("gemma-3-270m", device="cpu", cache=False)
    inquiries = get_task(INQUIRY).shipped_data().test[:4]
    questions = get_task("doc_qa").shipped_data().test[8:10]
    return ([request(resolved, INQUIRY, e) for e in inquiries] + [request(resolved, "doc_qa", e) for e in questions]
            + [request(resolved, "doc_qa", e, constrain=False) for e in questions])


def reference_answer(loaded, prompt: list[int], settings: GenerationSettings) -> str:
    """One token at a time, no cache, no screen, no draft: the full logits, the pattern's mask, the argmax."""
    import torch

    from smelt.lm.engine.constrained_rows import AnswerPatterns, RowMatcher
    from smelt.lm.engine.model_parts import logits_size

    patterns = AnswerPatterns(loaded.tokenizer, logits_size(loaded.model), "reference")
    matcher = RowMatcher(patterns.compiled(settings.pattern))
    end_ids, generated = set(end_token_ids(loaded.model, loaded.tokenizer)), []
    with torch.inference_mode():
        while len(generated) < settings.max_new_tokens:
            logits = loaded.model(input_ids=torch.tensor([prompt + generated])).logits[0, -1]
            token = int(logits.masked_fill(~matcher.allowed(), float("-inf")).argmax())
            if token in end_ids:
                break
            generated.append(token)
            matcher.accept([token])
            text = loaded.tokenizer.decode(generated, skip_special_tokens=True)
            if find_stop(text, settings.stop) >= 0:
                return text[: find_stop(text, settings.stop)]
    return loaded.tokenizer.decode(generated, skip_special_tokens=True)


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "padded-generate"])
def test_a_constrained_answer_is_the_argmax_of_the_masked_logits(embedded_lm, embedded_model, requests, continuous,
                                                                 monkeypatch):
    engine = embedded_lm.engine
    monkeypatch.setattr(engine, "continuous", continuous)  # the engine is shared: put it back afterwards
    chosen = [requests[0], requests[1], requests[4]]  # two labels, one free-text answer
    for prompt, settings in chosen:
        short = replace(settings, max_new_tokens=min(settings.max_new_tokens, 24))
        [answer] = engine.generate_batch([prompt], short)
        assert answer.text == reference_answer(embedded_model, prompt, short)
    labels = get_task(INQUIRY).answer_labels
    assert all(engine.generate_batch([p], s)[0].text in labels for p, s in requests[:4])


def test_the_same_answers_with_one_request_or_eight_in_flight(embedded_lm, requests):
    engine = embedded_lm.engine
    alone = [engine.generate_batch([prompt], settings)[0].text for prompt, settings in requests]
    start = threading.Barrier(len(requests))

    def ask(index: int) -> str:
        start.wait()
        prompt, settings = requests[index]
        return engine.generate_batch([prompt], settings)[0].text

    engine.close()  # peak_rows from zero
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(ask, range(len(requests))))
    assert engine.peak_rows >= 4  # constrained and free rows decoded in the same steps
    assert together == alone
    labels = get_task(INQUIRY).answer_labels
    assert all(text in labels for text in alone[:4])
    assert all("\n" not in text and text.strip() for text in alone[4:6])  # a free-text answer ends at its line


def test_drafts_are_held_to_the_pattern_and_change_no_answer(embedded_lm, requests, monkeypatch):
    engine = embedded_lm.engine
    prompt, settings = requests[5]
    texts, steps = {}, {}
    for drafts in (False, True):
        monkeypatch.setattr(engine, "prompt_lookup", drafts)  # the engine is shared: put it back afterwards
        before = engine.steps
        [answer] = engine.generate_batch([prompt], settings)
        texts[drafts], steps[drafts] = answer.text, engine.steps - before
    assert texts[True] == texts[False]
    assert re.fullmatch(settings.pattern, texts[True])
    assert steps[True] < steps[False]  # the answer copies its document: drafts were taken


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "padded-generate"])
def test_sampling_draws_only_what_the_pattern_allows(embedded_lm, requests, continuous, monkeypatch):
    engine = embedded_lm.engine
    monkeypatch.setattr(engine, "continuous", continuous)
    labels = get_task(INQUIRY).answer_labels
    prompt, settings = requests[2]
    sampled, unconstrained = [], []
    for seed in range(6):
        hot = replace(settings, temperature=1.5, top_p=0.95, seed=seed)
        sampled.append(engine.generate_batch([prompt], hot)[0].text)
        unconstrained.append(engine.generate_batch([prompt], replace(hot, pattern=None))[0].text)
    assert all(text in labels for text in sampled)
    assert not all(text in labels for text in unconstrained)  # the same draws without the mask leave the labels


# --- end to end ---------------------------------------------------------------------------------------------------

def compile_routing(root: Path, *flags: str) -> Path:
    """A short real compile of the label task (its six labeled demos), scored on four test examples."""
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "compile", INQUIRY, "--max-train", "6",
                             "--max-dev", "2", "--max-test", "4", "--latency-sample", "0", "--no-cache",
                             "--runs-root", str(root), *flags], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(re.search(r"run directory: (\S+)", result.stdout).group(1))


@pytest.fixture(scope="module")
def routing_run(tmp_path_factory) -> Path:
    return compile_routing(tmp_path_factory.mktemp("runs"))


def test_a_compiled_label_task_answers_only_labels(routing_run):
    labels = get_task(INQUIRY).answer_labels
    records = [json.loads(line) for split in ("baseline.dev", "baseline.test", "dev", "test")
               for line in (routing_run / "eval" / f"{split}.jsonl").read_text().splitlines()]
    assert len(records) == 12
    assert [r["prediction"] for r in records if r["prediction"] not in labels] == []
    manifest = json.loads((routing_run / "manifest.json").read_text())
    assert manifest["program_options"]["constrain"] is True


def test_serve_gives_the_answers_its_evaluation_recorded(routing_run):
    records = [json.loads(line) for line in (routing_run / "eval" / "test.jsonl").read_text().splitlines()]
    server = SmeltServe(str(routing_run), "--threads", "8", env=ENV)
    try:
        with server.client() as client, ThreadPoolExecutor(len(records)) as pool:
            replies = list(pool.map(lambda r: client.post("/v1/predict", json=r["inputs"]), records))
    finally:
        assert server.stop() == 0, server.output[-3000:]
    assert [reply.status_code for reply in replies] == [200] * len(records)
    assert [reply.json()["outputs"]["department"] for reply in replies] == [r["prediction"] for r in records]


def test_no_constrain_is_o_constrain_false_and_answers_leave_the_labels(tmp_path):
    free = compile_routing(tmp_path, "--no-constrain")
    assert json.loads((free / "manifest.json").read_text())["program_options"]["constrain"] is False
    labels = get_task(INQUIRY).answer_labels
    # Without demos (the baseline) the base model writes about the inquiry instead of naming a department.
    answers = [json.loads(line)["prediction"]
               for line in (free / "eval" / "baseline.test.jsonl").read_text().splitlines()]
    assert len(answers) == 4 and any(answer not in labels for answer in answers)  # what the constraint prevents


def test_chain_of_thought_reasons_then_answers_a_label(embedded_lm):
    task = get_task(INQUIRY)
    [(_, predictor)] = task.program({"predictor": "cot"}).named_predictors()
    example = task.shipped_data().test[0]
    prompt, settings = request(embedded_lm, INQUIRY, example, predictor="cot")
    [answer] = embedded_lm.engine.generate_batch([prompt], settings)
    parsed = PrefillChatAdapter().parse(predictor.signature, answer.text)
    assert parsed["department"] in task.answer_labels and parsed["reasoning"].strip()
    assert answer.finish_reason == "stop"  # the reasoning ended and the answer's marker came, within max_tokens
