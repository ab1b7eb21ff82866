"""The in-process engine on the real embedded model: generation, batching, stops, limits, seeds, DSPy cache."""

import itertools
import threading

import dspy
import pytest

from smelt.lm.generation import GenerationSettings, find_stop, settled_text, stream_pieces

PROMPTS = [
    "The capital of France is",
    "Here is a list of fruits: apple, banana,",
    "Question: How many days are there in a week?\nAnswer:",
    "東京は日本の首都です。大阪は",
]
COUNTING = "1, 2, 3, 4, 5, 6,"


def ids(resolved, text: str) -> list[int]:
    return resolved.engine.tokenizer(text)["input_ids"]


def test_embedded_model_loads_from_cache_and_generates(embedded_lm):
    from smelt.lm.embedded import is_embedded_model_cached

    assert is_embedded_model_cached()
    assert embedded_lm.engine.device == "cpu"
    [generation] = embedded_lm.engine.generate_batch([ids(embedded_lm, COUNTING)], GenerationSettings(max_new_tokens=6))
    assert generation.text.strip().startswith("7")
    assert generation.completion_tokens == 6


def plain_generate(loaded, prompt: list[int], max_new_tokens: int) -> str:
    """The reference: transformers' own greedy generate, one prompt at a time (``loaded``: model + tokenizer)."""
    import torch

    with torch.inference_mode():
        output = loaded.model.generate(
            torch.tensor([prompt]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
    return loaded.tokenizer.decode(output[0, len(prompt) :], skip_special_tokens=True)


@pytest.fixture(scope="module")
def sequential_reference(embedded_model):
    """Plain greedy generate for PROMPTS, one at a time: what every batched path must reproduce."""
    tokenizer = embedded_model.tokenizer
    prompts = [tokenizer(text)["input_ids"] for text in PROMPTS]
    return prompts, [plain_generate(embedded_model, p, 8) for p in prompts]


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "padded-generate"])
def test_batched_greedy_equals_sequential_greedy(embedded_lm, sequential_reference, continuous, monkeypatch):
    engine = embedded_lm.engine
    monkeypatch.setattr(engine, "continuous", continuous)  # the engine is shared: put it back afterwards
    prompts, sequential = sequential_reference
    assert len({len(p) for p in prompts}) == len(prompts)  # different lengths: rows are left-padded
    before = len(engine.batch_sizes)
    batched = [g.text for g in engine.generate_batch(prompts, GenerationSettings(max_new_tokens=8))]
    assert batched == sequential
    assert engine.batch_sizes[before:] == [4]


def test_rows_that_stop_early_leave_the_others_unchanged(embedded_lm, sequential_reference):
    # Rows hitting a stop string are dropped from the running batch; the rows left must decode as before.
    prompts, sequential = sequential_reference
    stop = (" ", "、")
    expected = [text[: find_stop(text, stop)] if find_stop(text, stop) >= 0 else text for text in sequential]
    assert len({len(text) for text in expected}) > 1  # the rows do stop at different steps
    generations = embedded_lm.engine.generate_batch(prompts, GenerationSettings(max_new_tokens=8, stop=stop))
    assert [g.text for g in generations] == expected


def test_prefix_cache_serves_later_batches_past_the_sliding_window(embedded_lm):
    # A compiled program's prompts share their instructions and demos: the engine computes that prefix once and
    # reuses it in later batches. Gemma 3 attends to 512 tokens in its sliding-window layers; these prompts are
    # longer, so the reused states must rebuild those layers as a plain prompt pass leaves them.
    engine = embedded_lm.engine
    engine.prefix_cache.clear()
    notice = " ".join(f"Item {i}: the office on floor {i % 7} opens at {8 + i % 5}:00." for i in range(40))
    questions = ["When does item 12 open?", "Which floor is item 3 on?", "What opens at 9:00?", "Where is item 30?"]
    prompts = [ids(embedded_lm, f"{notice}\nQuestion: {q}\nAnswer:") for q in questions]
    shared = next(i for i in range(len(prompts[0])) if prompts[0][i] != prompts[1][i])
    assert shared > 512
    stats = engine.prefix_cache.stats
    reused_before = stats.reused_tokens
    first = [g.text for g in engine.generate_batch(prompts[:2], GenerationSettings(max_new_tokens=5))]
    reused_in_first = stats.reused_tokens - reused_before
    assert shared <= reused_in_first < shared + 8  # the second row reused the first row's prefix, in the same batch
    later = [g.text for g in engine.generate_batch(prompts[2:], GenerationSettings(max_new_tokens=5))]
    reused_later = stats.reused_tokens - reused_before - reused_in_first
    assert reused_later >= 2 * shared  # a later batch starts from the cached prefix
    assert first + later == [plain_generate(embedded_lm.engine, p, 5) for p in prompts]
    again = engine.generate_batch(prompts[:1], GenerationSettings(max_new_tokens=5))  # the whole prompt is cached
    assert again[0].text == first[0]


def test_a_request_joins_the_running_batch_and_leaves_when_done(embedded_lm, sequential_reference):
    # Continuous batching: a request sent while another decodes joins at the next step and returns as soon as
    # it is finished, before the long one; both answers are what each would be alone.
    import time

    engine = embedded_lm.engine
    long_prompt = ids(embedded_lm, COUNTING)
    prompts, sequential = sequential_reference
    answers: dict[str, str] = {}
    finished: list[str] = []

    def ask(name: str, prompt: list[int], tokens: int) -> None:
        answers[name] = engine.generate_batch([prompt], GenerationSettings(max_new_tokens=tokens))[0].text
        finished.append(name)

    before = len(engine.batch_sizes)
    long = threading.Thread(target=ask, args=("long", long_prompt, 40))
    long.start()
    while engine.peak_rows < 1:  # the long request is decoding
        time.sleep(0.01)
    short = threading.Thread(target=ask, args=("short", prompts[0], 8))
    short.start()
    short.join()
    long.join()
    assert finished == ["short", "long"]
    assert engine.batch_sizes[before:] == [1, 1] and engine.peak_rows == 2  # two admissions, decoded together
    assert answers["short"] == sequential[0]
    assert answers["long"] == plain_generate(embedded_lm.engine, long_prompt, 40)


def test_a_caller_that_asks_again_at_once_joins_the_very_next_step(embedded_lm):
    # DSPy's threads and an HTTP client's loop send their next request a few milliseconds after their answer: the
    # engine waits that long after a step that answered someone, so the new request decodes at the next step
    # instead of one step later (a whole step of the batch without it).
    import time

    engine = embedded_lm.engine
    long_prompt, short_prompt = ids(embedded_lm, COUNTING), ids(embedded_lm, PROMPTS[0])
    answered_at: list[int] = []
    admissions = len(engine.batch_sizes)
    long = threading.Thread(target=engine.generate_batch,
                            args=([long_prompt], GenerationSettings(max_new_tokens=120)))
    long.start()
    while len(engine.batch_sizes) == admissions:  # the long request is decoding
        time.sleep(0.005)
    for _ in range(4):  # one token each: each request is answered by the step after its admission
        engine.generate_batch([short_prompt], GenerationSettings(max_new_tokens=1))
        answered_at.append(engine.steps)
    assert long.is_alive()  # every short request decoded beside the long one
    long.join()
    assert [b - a for a, b in itertools.pairwise(answered_at)] == [1, 1, 1]


def test_a_cancelled_call_leaves_the_batch_at_the_next_step_and_the_others_go_on(embedded_lm):
    # serve cancels the calls of a request past --timeout: the engine drops that row at its next step (its caller
    # gets CallCancelled), and a request decoding beside it still gets the answer it would get alone.
    import time

    from smelt.lm.call_scope import CallCancelled, CallScope

    engine = embedded_lm.engine
    counting, other = ids(embedded_lm, COUNTING), ids(embedded_lm, PROMPTS[1])
    scope, outcome, ended_at = CallScope(), {}, {}

    def cancelled_call() -> None:
        with scope.active():
            try:
                outcome["cancelled"] = engine.generate_batch([counting], GenerationSettings(max_new_tokens=400))
            except CallCancelled as exc:
                outcome["cancelled"] = exc
        ended_at["steps"] = engine.steps

    def other_call() -> None:
        outcome["other"] = engine.generate_batch([other], GenerationSettings(max_new_tokens=24))[0].text

    admissions = len(engine.batch_sizes)
    first = threading.Thread(target=cancelled_call)
    first.start()
    while len(engine.batch_sizes) < admissions + 1:
        time.sleep(0.005)
    second = threading.Thread(target=other_call)
    second.start()
    while len(engine.batch_sizes) < admissions + 2:  # both decode in one batch now
        time.sleep(0.005)
    steps_at_cancel = engine.steps
    scope.cancel()
    first.join(timeout=120)
    second.join(timeout=120)
    assert isinstance(outcome["cancelled"], CallCancelled) and "cancelled after" in str(outcome["cancelled"])
    assert ended_at["steps"] - steps_at_cancel <= 2  # dropped at the next step, not after 400 tokens
    assert outcome["other"] == plain_generate(engine, other, 24)
    with scope.active():  # a call made in a cancelled scope never reaches the model
        with pytest.raises(CallCancelled, match="before its prompt pass"):
            engine.generate_batch([counting], GenerationSettings(max_new_tokens=4))


def test_a_cancelled_call_stops_inside_a_padded_generate_call(embedded_lm, monkeypatch):
    # Models the running batch cannot hold go through one padded generate call: it stops a cancelled row too.
    import time

    from smelt.lm.call_scope import CallCancelled, CallScope

    engine = embedded_lm.engine
    monkeypatch.setattr(engine, "continuous", False)  # the engine is shared: put it back afterwards
    scope, outcome = CallScope(), {}

    def cancelled_call() -> None:
        with scope.active():
            try:
                outcome["result"] = engine.generate_batch([ids(embedded_lm, COUNTING)],
                                                          GenerationSettings(max_new_tokens=400))
            except CallCancelled as exc:
                outcome["result"] = exc

    call = threading.Thread(target=cancelled_call)
    call.start()
    time.sleep(1.0)
    scope.cancel()
    call.join(timeout=300)
    assert isinstance(outcome["result"], CallCancelled), outcome
    tokens = int(str(outcome["result"]).split("after ")[1].split()[0])
    assert 0 < tokens < 200  # stopped where it was cancelled, not after 400 tokens


def test_a_streamed_answer_is_the_complete_answer_piece_by_piece(embedded_lm):
    from dspy.lm15 import Config, Message, Request

    engine = embedded_lm.engine
    for stop in ((), (" 9",), ("\n",)):
        request = Request(model="m", messages=(Message.user(COUNTING),),
                          config=Config(max_tokens=30, temperature=0.0, stop=stop))
        whole = engine.complete(request)
        events = list(engine.stream(request))
        pieces = [event.delta.text for event in events if event.type == "delta"]
        assert [event.type for event in events][0] == "start" and events[-1].type == "end"
        assert len(pieces) > 3 and "".join(pieces) == whole.text, (stop, pieces, whole.text)
        assert events[-1].finish_reason == whole.finish_reason and events[-1].usage == whole.usage


def test_settled_text_holds_back_what_a_later_token_may_change():
    assert settled_text("5, 6, 7", ()) == "5, 6, 7"
    assert settled_text("5, 6, 7, 8", (" 9",)) == "5, 6, 7, 8"
    assert settled_text("5, 6, 7, 8, ", (" 9",)) == "5, 6, 7, 8,"  # the space may start " 9"
    assert settled_text("5, 6, 7, 8, 9, 10", (" 9",)) == "5, 6, 7, 8,"  # a stop ends it for good
    assert settled_text("東京\ufffd", ()) == "東京"  # the rest of a character's bytes are still to come
    assert settled_text("answer [[ ## comp", ("[[ ## completed ## ]]",)) == "answer "
    assert settled_text("\n\nanswer", ("\n\n",)) == "\n\nanswer"  # stops count after the first non-blank


def test_stream_pieces_are_never_taken_back_and_add_up_to_the_final_text():
    partial = ["5", "5,", "5, ", "5, 6", "5, 6,"]
    assert list(stream_pieces(partial, (" 9",), lambda: "5, 6,")) == ["5", ",", " 6", ","]  # "5, " waited for " 6"
    assert list(stream_pieces(["ab "], (" 9",), lambda: "ab ")) == ["ab", " "]  # the held tail comes at the end


COPYING = [  # answers that copy their prompt, as document QA answers do: drafts hold for many tokens
    "Copy the notice exactly.\nNotice: Burnable waste is collected every Monday and Thursday. Put out your bags by "
    "8:30 a.m. at your designated collection point.\nCopy: Burnable waste is collected",
    "次の文をそのまま書き写してください。\n文: 燃えるごみは毎週月曜日と木曜日に収集します。"
    "収集日の午前8時30分までに出してください。\n写し: 燃えるごみは",
]


def test_drafted_tokens_leave_answers_unchanged_in_fewer_steps(embedded_lm, sequential_reference, monkeypatch):
    # Prompt-lookup drafts: rows that copy their prompt gain several tokens per step, rows beside them keep theirs
    # (their rejected drafts stay in the cache as holes the masks hide), and a seeded sampling row beside them
    # draws what it draws alone.
    engine = embedded_lm.engine
    prompts, _ = sequential_reference
    rows = [ids(embedded_lm, text) for text in COPYING] + prompts
    expected = [plain_generate(engine, p, 24) for p in rows]
    steps = {}
    for drafts in (False, True):
        monkeypatch.setattr(engine, "prompt_lookup", drafts)  # the engine is shared: put it back afterwards
        texts = [g.text for g in engine.generate_batch(rows, GenerationSettings(max_new_tokens=24))]
        assert texts == expected
        before = engine.steps
        copies = [g.text for g in engine.generate_batch(rows[:2], GenerationSettings(max_new_tokens=24))]
        steps[drafts] = engine.steps - before
        assert copies == expected[:2]
    assert steps[False] == 24 and steps[True] <= 12  # two copying rows: a step feeds each up to 7 drafted tokens

    sampling = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=7)
    sampled_alone = engine.generate_batch([rows[2]], sampling)[0].text
    results = {}

    def call(index: int, prompt: list[int], settings: GenerationSettings) -> None:
        results[index] = engine.generate_batch([prompt], settings)[0].text

    threads = [threading.Thread(target=call, args=(0, rows[2], sampling)),
               *(threading.Thread(target=call, args=(i, rows[i - 1], GenerationSettings(max_new_tokens=24)))
                 for i in (1, 2))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {0: sampled_alone, 1: expected[0], 2: expected[1]}


def test_stop_strings_cut_the_text(embedded_lm):
    engine = embedded_lm.engine
    prompt = ids(embedded_lm, COUNTING)
    [free] = engine.generate_batch([prompt], GenerationSettings(max_new_tokens=12))
    assert " 9," in free.text
    [stopped] = engine.generate_batch([prompt], GenerationSettings(max_new_tokens=12, stop=("9",)))
    assert stopped.text == free.text[: free.text.index("9")]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < free.completion_tokens


def test_max_tokens_is_honoured(embedded_lm):
    [generation] = embedded_lm.engine.generate_batch(
        [ids(embedded_lm, COUNTING)], GenerationSettings(max_new_tokens=3)
    )
    assert generation.completion_tokens == 3
    assert generation.finish_reason == "length"


def test_token_usage_is_reported(embedded_lm):
    from smelt.lm.rendering import encode_prompt

    lm = embedded_lm.lm
    outputs = lm("Count: 1, 2, 3,", max_tokens=5)
    assert isinstance(outputs[0], str) and outputs[0]
    usage = lm.history[-1]["usage"]
    prompt = encode_prompt(embedded_lm.engine.tokenizer, [{"role": "user", "content": "Count: 1, 2, 3,"}])
    assert usage["prompt_tokens"] == len(prompt)
    assert 0 < usage["completion_tokens"] <= 5
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_concurrent_calls_share_generate_calls(embedded_lm):
    lm, engine = embedded_lm.lm, embedded_lm.engine
    before = len(engine.batch_sizes)
    results: dict[int, str] = {}
    start = threading.Barrier(4)

    def call(i: int) -> None:
        start.wait()
        results[i] = lm(PROMPTS[i], max_tokens=4)[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1, 2, 3]
    assert sum(engine.batch_sizes[before:]) == 4
    assert len(engine.batch_sizes[before:]) < 4


def test_sampling_with_a_seed_is_reproducible(embedded_lm):
    engine = embedded_lm.engine
    prompt = ids(embedded_lm, PROMPTS[1])
    settings = GenerationSettings(max_new_tokens=8, temperature=1.0, seed=1234)
    first = engine.generate_batch([prompt], settings)[0].text
    second = engine.generate_batch([prompt], settings)[0].text
    assert first == second
    # Each seeded request draws from its own generator: batched with others, it samples the same text.
    others = [ids(embedded_lm, text) for text in PROMPTS[2:]]
    unseeded = GenerationSettings(max_new_tokens=8, temperature=1.0)
    jobs = [(prompt, settings), *((other, unseeded) for other in others)]
    results = {}

    def call(index: int) -> None:
        results[index] = engine.generate_batch([jobs[index][0]], jobs[index][1])[0].text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results[0] == first


def test_dspy_cache_serves_a_repeated_call(embedded_model, tmp_path):
    from smelt.lm import lm_for_spec

    previous = dspy.cache
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(tmp_path / "dspy"))
    try:
        resolved = lm_for_spec("gemma-3-270m", device="cpu", max_tokens=8, cache=True)
        predict = dspy.Predict("question -> answer")
        before = len(resolved.engine.batch_sizes)
        with resolved.context():
            first = predict(question="What is the capital of France?")
            calls = list(resolved.engine.batch_sizes)
            second = predict(question="What is the capital of France?")
        assert calls[before:] == [1]
        assert resolved.engine.batch_sizes == calls
        assert second.answer == first.answer
    finally:
        dspy.cache = previous


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_settings_come_from_the_dspy_request(embedded_lm, temperature):
    from types import SimpleNamespace

    config = SimpleNamespace(max_tokens=None, temperature=temperature, top_p=None, stop=["]]"], seed=3,
                             response_format=None)
    settings = GenerationSettings.from_config(config)
    assert settings.max_new_tokens == 256 and settings.temperature == temperature
    assert settings.stop == ("]]",) and settings.seed == 3
