"""constrain=True (smelt.programs.answer_constraint, smelt.lm.completion_pattern): what each predictor asks for, the
pattern the adapter makes of it, and the masks llguidance computes from it on the embedded model's real tokenizer
(which tokens may start an answer, what may follow a finished one); a pattern llguidance cannot take, and a model that
takes no pattern, run unconstrained with one line; DSPy's response cache keeps constrained and unconstrained answers
apart."""

import dataclasses
import datetime
import itertools
import re
import secrets

import dspy
import pytest
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils.dummies import DummyLM
from mistakes import ROOT

from smelt.lm.completion_pattern import (
    COMPLETED_MARKER,
    completion_pattern,
    completion_pattern_of,
    requested_values,
)
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.lm.server_adapter import ServerChatAdapter
from smelt.programs.answer_constraint import DATE_PATTERN, NUMBER_PATTERN, SENTENCE_PATTERN, fields_format
from smelt.programs.answer_format import AnswerFormat, is_iso_date
from smelt.programs.registry import get_task

INQUIRY = str(ROOT / "examples" / "inquiry_routing.toml")
DUE_DATES = str(ROOT / "tests" / "fixtures" / "due_dates.toml")
END = f"\n\n{COMPLETED_MARKER}"
SPACES = " \t\n\r\u3000\u00a0"


# --- what a program asks for, and the pattern of its completion -------------------------------------------------

def test_the_date_pattern_is_the_calendar():
    for year, month, day in itertools.product((1, 1900, 2000, 2023, 2024, 2100, 2400, 9999), range(15), range(33)):
        text = f"{year:04d}-{month:02d}-{day:02d}"
        assert (re.fullmatch(DATE_PATTERN, text) is not None) == is_iso_date(text), text
    assert re.fullmatch(DATE_PATTERN, "0000-01-01") is None and not is_iso_date("0000-01-01")
    date = datetime.date(2026, 1, 1)
    while date.year == 2026:
        assert re.fullmatch(DATE_PATTERN, date.isoformat())
        date += datetime.timedelta(days=1)


def test_the_number_pattern_is_the_one_answers_are_checked_against():
    for text in ["42", "-3", "1,200", "37.5", "+1,234,567.25", "1,20", "1.", "about 40", "１２"]:
        assert (re.fullmatch(NUMBER_PATTERN, text) is not None) == AnswerFormat("number").matches(text), text


def test_each_predictor_asks_for_its_fields_values():
    labels = get_task(INQUIRY)
    [(_, predictor)] = labels.program().named_predictors()
    schema = requested_values(predictor.config["response_format"])
    assert schema == {"department": {"type": "string", "enum": list(labels.answer_labels)}}
    assert "response_format" not in labels.program({"constrain": False}).named_predictors()[0][1].config

    [(_, cot)] = labels.program({"predictor": "cot"}).named_predictors()
    assert requested_values(cot.config["response_format"]) == {
        "reasoning": {"type": "string"}, "department": {"type": "string", "enum": list(labels.answer_labels)}}
    assert cot.config["max_tokens"] >= 320  # the predictor's own config is kept

    [(_, dates)] = get_task(DUE_DATES).program().named_predictors()
    assert requested_values(dates.config["response_format"]) == {"due_date": {"type": "string",
                                                                              "pattern": DATE_PATTERN}}
    doc_qa = get_task("doc_qa")
    [(_, free)] = doc_qa.program().named_predictors()
    assert requested_values(free.config["response_format"]) == {"answer": {"type": "string",
                                                                         "pattern": SENTENCE_PATTERN}}


def test_a_patterns_flags_travel_inline_and_its_anchors_go():
    task = get_task(DUE_DATES)
    flagged = dataclasses.replace(task, formats={"due_date": re.compile(r"[a-z]{3}-\d+", re.IGNORECASE)})
    values = requested_values(fields_format(flagged, flagged.signature))
    assert values["due_date"]["pattern"] == r"(?i:[a-z]{3}-\d+)"
    anchored = dataclasses.replace(task, formats={"due_date": re.compile(r"^[A-Z]{3}-\d+$")})
    assert requested_values(fields_format(anchored, anchored.signature))["due_date"]["pattern"] == r"[A-Z]{3}-\d+"


@pytest.mark.parametrize(("completion", "matches"), [
    ("taxes", True), ("taxes" + END, True), ("taxes\n\n", False), ("Taxes", False), ("taxes and roads", False),
    ("tax", False), ("", False)])
def test_a_label_completion_is_a_label_then_the_end(completion, matches):
    pattern = completion_pattern(["department"], {"department": {"enum": ["taxes", "roads_and_parks"]}})
    assert (re.fullmatch(pattern, completion) is not None) is matches


@pytest.mark.parametrize(("completion", "matches"), [
    ("Paris.", True), ("Paris [r03]." + END, True), ("It opens at 8:30 a.m.", True), ("It costs 3.5 yen", True),
    ("7月11日までに届け出てください。", True), ("9:00 a.m. [r03, r17]", True), ("午前9時です。[r03]", True),
    ("Paris.\nQuestion: what else?", False), ("Paris. It is big.", False), ("Paris. [r1] and more", False),
    ("東京です。大阪です。", False), ("Paris.\n\n[[ ## question ## ]]", False), (" Paris", False), ("\nParis", False),
    ("Paris [[ ## x", False), ("Paris" + END + " more", False)])
def test_a_free_text_answer_is_one_sentence_then_the_end(completion, matches):
    pattern = completion_pattern(["answer"], {"answer": {"pattern": SENTENCE_PATTERN}})
    assert (re.fullmatch(pattern, completion) is not None) is matches


def test_reasoning_may_run_over_lines_and_then_comes_the_answer_field():
    pattern = completion_pattern(["reasoning", "answer"], {"answer": {"enum": ["yes", "no"]}})
    assert re.fullmatch(pattern, "It rains.\nSo it is wet.\n\n[[ ## answer ## ]]\nyes" + END)
    assert not re.fullmatch(pattern, "It rains.\n\nSo it is wet.\n\n[[ ## answer ## ]]\nyes")  # no blank line in it
    assert not re.fullmatch(pattern, "It rains.\n\n[[ ## answer ## ]]\nmaybe")
    assert not re.fullmatch(pattern, "It rains.\n\n[[ ## note ## ]]\nyes")


# --- masks on the embedded model's tokenizer ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from smelt.lm.embedded import ensure_embedded_model

    return AutoTokenizer.from_pretrained(ensure_embedded_model())  # as lm/loading.py loads it


@pytest.fixture(scope="module")
def patterns(tokenizer):
    from smelt.lm.engine.constrained_rows import AnswerPatterns

    return AnswerPatterns(tokenizer, len(tokenizer), "gemma-3-270m")


@pytest.fixture(scope="module")
def token_texts(tokenizer) -> dict[int, str]:
    """Every ordinary token's text (special tokens left out: no pattern allows them)."""
    special = set(tokenizer.all_special_ids)
    texts = {}
    for token, token_id in tokenizer.get_vocab().items():
        if token_id in special:
            continue
        if re.fullmatch(r"<0x[0-9A-F]{2}>", token):
            texts[token_id] = bytes([int(token[3:5], 16)]).decode("latin-1")
        else:
            texts[token_id] = token.replace("\u2581", " ")
    return texts


def allowed_after(patterns, tokenizer, pattern: str, written: str) -> set[int]:
    from smelt.lm.engine.constrained_rows import RowMatcher

    matcher = RowMatcher(patterns.compiled(pattern))
    matcher.accept(tokenizer.encode(written, add_special_tokens=False) if written else [])
    return set(matcher.allowed().nonzero()[:, 0].tolist())


def test_a_label_answer_starts_only_with_the_start_of_a_label(patterns, tokenizer, token_texts):
    labels = list(get_task(INQUIRY).answer_labels)
    allowed = allowed_after(patterns, tokenizer, completion_pattern(["department"], {"department": {"enum": labels}}),
                            "")
    expected = {i for i, text in token_texts.items() if text and any(label.startswith(text) for label in labels)}
    assert allowed == expected
    assert {token_texts[i] for i in allowed} >= {"t", "tax", "roads", "res"}


def test_a_finished_label_allows_only_the_end(patterns, tokenizer, token_texts):
    labels = list(get_task(INQUIRY).answer_labels)
    pattern = completion_pattern(["department"], {"department": {"enum": labels}})
    allowed = allowed_after(patterns, tokenizer, pattern, "roads_and_parks")
    assert tokenizer.eos_token_id in allowed
    others = allowed - {tokenizer.eos_token_id}
    assert others and all(END.startswith(token_texts[i]) for i in others)
    assert allowed_after(patterns, tokenizer, pattern, "taxes\n\n[[ ## completed ## ]]") == {tokenizer.eos_token_id}


def test_a_date_follows_the_calendar_token_by_token(patterns, tokenizer, token_texts):
    pattern = completion_pattern(["due_date"], {"due_date": {"pattern": DATE_PATTERN}})
    first = allowed_after(patterns, tokenizer, pattern, "")
    assert first and all(token_texts[i].isascii() and token_texts[i].isdigit() for i in first)
    day_after = {token_texts[i] for i in allowed_after(patterns, tokenizer, pattern, "2026-02-2")}
    assert "8" in day_after and "9" not in day_after  # 2026 is no leap year
    assert "9" in {token_texts[i] for i in allowed_after(patterns, tokenizer, pattern, "2024-02-2")}


def test_a_number_and_a_pattern_start_as_they_must(patterns, tokenizer, token_texts):
    number = allowed_after(patterns, tokenizer, completion_pattern(["n"], {"n": {"pattern": NUMBER_PATTERN}}), "")
    assert {"1", "-", "+"} <= {token_texts[i] for i in number}
    assert all(re.fullmatch(r"[+-]?[0-9][0-9,.]*|[+-]", token_texts[i]) for i in number)
    ticket = allowed_after(patterns, tokenizer, completion_pattern(["t"], {"t": {"pattern": "[A-Z]{3}-[0-9]{4}"}}),
                           "")
    assert {"A", "ABC"} <= {token_texts[i] for i in ticket}
    assert all(re.fullmatch(r"[A-Z]{1,3}(-[0-9]{0,4})?", token_texts[i]) for i in ticket)


def test_a_free_text_answer_ends_at_its_line_break_or_its_sentence(patterns, tokenizer, token_texts):
    pattern = completion_pattern(["answer"], {"answer": {"pattern": SENTENCE_PATTERN}})
    allowed = allowed_after(patterns, tokenizer, pattern, "Paris is the capital")
    assert tokenizer.eos_token_id in allowed and len(allowed) > 100_000  # free text goes on as it likes
    assert any(token_texts.get(i) == "\n\n" for i in allowed)
    for i in allowed - {tokenizer.eos_token_id}:
        text = token_texts[i]
        assert "[[" not in text
        if "\n" in text:  # the end and nothing else: no second line, no invented field
            assert END.startswith(text[text.index("\n"):]), repr(text)
    after_sentence = allowed_after(patterns, tokenizer, pattern, "It opens at 8:30 a.m.")
    assert tokenizer.eos_token_id in after_sentence and any(token_texts.get(i) == "\n\n" for i in after_sentence)
    assert not any(token_texts[i][:1] in SPACES and not END.startswith(token_texts[i])
                   and not re.fullmatch(r" \[?[^\[\]\s]*\]?", token_texts[i])
                   for i in after_sentence - {tokenizer.eos_token_id})  # no second sentence: the end, or [id]s
    first = allowed_after(patterns, tokenizer, pattern, "")
    assert not any(token_texts[i][:1] in SPACES for i in first)  # a visible start
    reasoning = allowed_after(patterns, tokenizer, completion_pattern(["reasoning", "answer"], {}), "It rains.")
    assert any(token_texts.get(i) == "\n" for i in reasoning)  # a chain of thought may go on over lines


def test_a_pattern_llguidance_cannot_take_runs_unconstrained_with_one_line(patterns, capsys):
    assert patterns.compiled(r"(?<=a)b") is None
    assert patterns.compiled(r"(?<=a)b") is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[smelt] gemma-3-270m: answers are not constrained (llguidance "
                                                   "cannot take the pattern '(?<=a)b': ")
    assert "look-around" in lines[0]


# --- the adapters, and DSPy's response cache ---------------------------------------------------------------------

class PatternEngine:
    """A DSPy engine that applies no pattern but records the ones it is sent, answering with a count."""

    takes_completion_pattern = True

    def __init__(self):
        self.patterns = []

    def complete(self, request):
        self.patterns.append(completion_pattern_of(request.config.response_format))
        return Response(id=None, model="pattern-engine", message=Message.assistant([TextPart(
            f"taxes{len(self.patterns)}" if self.patterns[-1] is None else "taxes")]),
            finish_reason="stop", usage=Usage(input_tokens=1, output_tokens=1))


def test_the_adapter_sends_its_completion_pattern_and_the_cache_keeps_answers_apart():
    task = get_task(INQUIRY)
    engine = PatternEngine()
    lm = dspy.LM("smelt/pattern-engine-test", engine=engine, cache=True)
    question = {"inquiry": f"Where do I pay my car tax? ({secrets.token_hex(8)})"}  # new to DSPy's cache
    with dspy.context(lm=lm, adapter=PrefillChatAdapter()):
        constrained = [task.program()(**question).department for _ in range(2)]
        unconstrained = task.program({"constrain": False})(**question).department
        again = task.program()(**question).department
    labels = "|".join(task.answer_labels)
    assert engine.patterns == [f"(?:{labels})(?:\\n\\n\\[\\[ ## completed ## \\]\\])?", None]  # the rest: cache
    assert constrained == ["taxes", "taxes"] and again == "taxes" and unconstrained == "taxes2"


def test_a_model_without_patterns_answers_unconstrained_and_says_so_once(capsys):
    task = get_task(INQUIRY)
    lm = DummyLM([{"department": "taxes"}] * 4)
    for adapter in (PrefillChatAdapter(), ServerChatAdapter()):
        with dspy.context(lm=lm, adapter=adapter):
            for _ in range(2):
                assert task.program()(inquiry="Where do I pay my car tax?").department == "taxes"
    assert all("response_format" not in call["kwargs"] for call in lm.history)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("[smelt] dummy: answers are not constrained (") for line in lines)
