"""A constrained request on a model behind a server (smelt.lm.server_constraints, smelt.lm.gbnf): the answer pattern
goes in the field the server takes it in, found from the server's ``GET /models`` (vLLM, SGLang, llama.cpp's server),
asserted on the body each request brings to a real HTTP server the test starts (``tests/completion_stub.py``); a
server that takes no pattern, or refuses one, answers unconstrained with one line; the GBNF grammar written for
llama.cpp matches what the pattern matches. ``tests/test_real_server.py`` runs ``transformers serve``, which takes
none."""

import re

import pytest
from mistakes import ROOT

from smelt.lm.completion_pattern import COMPLETED_MARKER, completion_pattern
from smelt.programs.answer_constraint import DATE_PATTERN, NUMBER_PATTERN, SENTENCE_PATTERN
from smelt.programs.registry import get_task

INQUIRY = str(ROOT / "examples" / "inquiry_routing.toml")
END = f"\n\n{COMPLETED_MARKER}"


def _label_pattern() -> str:
    return completion_pattern(["department"], {"department": {"enum": list(get_task(INQUIRY).answer_labels)}})


def _ask_server(stub, *questions: str) -> list[str]:
    from smelt.lm import lm_for_spec

    resolved = lm_for_spec("text-completion-openai/base", api_base=stub.url, cache=False)
    with resolved.context():
        return [get_task(INQUIRY).program()(inquiry=question).department for question in questions]


@pytest.mark.parametrize(("owned_by", "version", "field"), [
    ("vllm", "0.11.0", "structured_outputs"), ("vllm", "0.9.2", "guided_regex"), ("sglang", None, "regex"),
    ("llamacpp", None, "grammar")])
def test_a_completion_server_gets_the_pattern_in_its_own_field(owned_by, version, field):
    from completion_stub import CompletionStub

    from smelt.lm.gbnf import gbnf_grammar

    with CompletionStub(owned_by, "taxes", version=version) as stub:
        assert _ask_server(stub, "Where do I pay my car tax?") == ["taxes"]
    [body] = stub.bodies
    constraint = {key: body[key] for key in ("structured_outputs", "guided_regex", "regex", "grammar") if key in body}
    expected = {"structured_outputs": {"regex": _label_pattern()}, "guided_regex": _label_pattern(),
                "regex": _label_pattern(), "grammar": gbnf_grammar(_label_pattern())}[field]
    assert constraint == {field: expected}
    assert body["stop"][:1] == [COMPLETED_MARKER] and body["max_tokens"] == 12  # the rest of the request as before


def test_a_server_that_takes_no_pattern_answers_unconstrained_and_says_so_once(capsys):
    from completion_stub import CompletionStub

    with CompletionStub("huggingface", "taxes") as stub:
        assert _ask_server(stub, "Where do I pay my car tax?", "Who fixes potholes?") == ["taxes", "taxes"]
    assert len(stub.bodies) == 2
    assert not any({"structured_outputs", "guided_regex", "regex", "grammar"} & body.keys() for body in stub.bodies)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "answers are not constrained (the server at" in lines[0] and "(unknown)" in lines[0]


def test_a_pattern_the_server_refuses_is_asked_again_without_it(capsys):
    from completion_stub import CompletionStub

    with CompletionStub("vllm", "taxes", version="0.11.0", refuse="structured_outputs") as stub:
        assert _ask_server(stub, "Where do I pay my car tax?", "Who fixes potholes?") == ["taxes", "taxes"]
    assert ["structured_outputs" in body for body in stub.bodies] == [True, False, False]
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "the server refused the pattern: " in lines[0]


@pytest.mark.parametrize("values", [{"enum": ["taxes", "roads_and_parks"]}, {"pattern": DATE_PATTERN},
                                    {"pattern": NUMBER_PATTERN}, {"pattern": "[A-Z]{3}-[0-9]{4}"},
                                    {"pattern": SENTENCE_PATTERN}, {}])
def test_the_gbnf_grammar_matches_what_the_pattern_matches(values):
    import llguidance
    from llguidance.gbnf_to_lark import gbnf_to_lark

    from smelt.lm.gbnf import gbnf_grammar

    pattern = completion_pattern(["answer"], {"answer": values})
    lark = gbnf_to_lark(gbnf_grammar(pattern))
    tokenizer = llguidance.LLTokenizer("byte")
    samples = ["taxes", "roads_and_parks", "tax", "2024-02-29", "2026-02-29", "2026-13-01", "1,200", "1,20", "-3.5",
               "ABC-1234", "AB-1234", "Paris [r1].", "Paris\nmore", " Paris", "taxes" + END, "2026-06-30" + END,
               "9:00 a.m. [r03]", "Paris. It is big.", "東京です。"]
    for sample in samples:
        matcher = llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_lark(lark), log_level=0)
        accepted = matcher.consume_tokens(list(sample.encode())) and matcher.is_accepting()
        assert accepted == (re.fullmatch(pattern, sample) is not None), (sample, values)
    assert gbnf_grammar(r"(?<=a)b") is None and gbnf_grammar(r"(a)\1") is None
