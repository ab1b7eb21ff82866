"""The PrefillChatAdapter: a 270M base model's doc-QA answers parse, and parse() is lenient where it should be."""

from concurrent.futures import ThreadPoolExecutor

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from dspy.utils.exceptions import AdapterParseError

from smelt.lm.prefill_adapter import COMPLETED_MARKER, PrefillChatAdapter

QA = dspy.Signature("document, question -> answer")
REASONED_QA = dspy.Signature("document, question -> reasoning, answer")

DOC_QA = [
    ("The city library is open from 9:00 to 19:00 on weekdays and from 10:00 to 17:00 on weekends. "
     "It is closed on the last Monday of each month.", "What time does the library close on weekdays?"),
    ("Burnable waste is collected every Tuesday and Friday. Bags must be put out by 8:30 a.m. "
     "at the designated collection point.", "By what time must bags be put out?"),
    ("The home insulation grant covers half of the cost of new windows, up to 150,000 yen per household. "
     "Applications open on May 1 and close on June 30.", "What is the maximum grant per household?"),
    ("Flu vaccinations for residents aged 65 and over cost 1,500 yen. The clinic is held at the Health "
     "Center on the first floor every Saturday in November.", "How much does the vaccination cost?"),
    ("Road closures for the summer festival will be in effect on August 2 from 16:00 to 22:00 around "
     "Central Station. Buses will use a detour route.", "On what date are the roads closed?"),
    ("市立図書館の開館時間は平日が午前9時から午後7時まで、土日は午前10時から午後5時までです。毎月最終月曜日は休館日です。",
     "平日の閉館時間は何時ですか。"),
    ("燃えるごみは毎週火曜日と金曜日に収集します。収集日の午前8時30分までに指定の集積所に出してください。",
     "ごみは何時までに出す必要がありますか。"),
    ("住宅断熱改修補助金は、窓の改修費用の2分の1を補助します。上限は1世帯あたり15万円です。申請期間は5月1日から6月30日までです。",
     "補助金の上限はいくらですか。"),
    ("65歳以上の方のインフルエンザ予防接種の自己負担額は1,500円です。接種は保健センター1階で行います。",
     "予防接種の自己負担額はいくらですか。"),
    ("夏まつりの開催に伴い、8月2日午後4時から午後10時まで中央駅周辺で交通規制を行います。バスは迂回運行となります。",
     "交通規制が行われるのは何月何日ですか。"),
]


def test_doc_qa_answers_parse_on_the_embedded_model(embedded_lm, record_property):
    predict = dspy.Predict(QA)

    def ask(case: tuple[str, str]) -> str | None:
        document, question = case
        with embedded_lm.context():
            try:
                return predict(document=document, question=question, config={"max_tokens": 24}).answer
            except AdapterParseError:
                return None

    with ThreadPoolExecutor(max_workers=len(DOC_QA)) as pool:
        answers = list(pool.map(ask, DOC_QA))
    parsed = [a for a in answers if a is not None and a.strip()]
    rate = len(parsed) / len(DOC_QA)
    record_property("parse_rate", rate)
    print(f"\nparse rate {len(parsed)}/{len(DOC_QA)}; answers: {answers}")
    assert rate >= 0.9, answers
    assert len(embedded_lm.engine.batch_sizes) < len(DOC_QA)  # the threads shared generate calls


@pytest.mark.parametrize(
    "completion",
    [
        "9:00",  # the model only writes the value: the prefilled marker is put back
        "[[ ## answer ## ]]\n9:00",  # an instruct model repeats the marker
        "  \n[[ ## answer ## ]]\n9:00\n\n[[ ## completed ## ]]",
        "9:00\n\n[[ ## completed ## ]]\n",
        "9:00\n\n[[ ## compl",  # cut by max_tokens inside a marker
        "9:00\n\n[[",
    ],
)
def test_parse_is_lenient(completion):
    assert PrefillChatAdapter().parse(QA, completion) == {"answer": "9:00"}


def test_parse_keeps_multiline_values():
    assert PrefillChatAdapter().parse(QA, "Mondays\nand Thursdays") == {"answer": "Mondays\nand Thursdays"}


def test_parse_reads_later_output_fields():
    parsed = PrefillChatAdapter().parse(REASONED_QA, "The notice says 9:00.\n\n[[ ## answer ## ]]\n9:00")
    assert parsed == {"reasoning": "The notice says 9:00.", "answer": "9:00"}


def test_parse_fails_when_a_later_field_is_missing():
    with pytest.raises(AdapterParseError):
        PrefillChatAdapter().parse(REASONED_QA, "The notice says 9:00.")


def test_format_ends_with_the_prefill():
    messages = PrefillChatAdapter().format(QA, [], {"document": "d", "question": "q"})
    assert messages[-1] == {"role": "assistant", "content": "[[ ## answer ## ]]\n"}
    assert "Respond with the corresponding output fields" not in messages[-2]["content"]
    reasoned = PrefillChatAdapter().format(REASONED_QA, [], {"document": "d", "question": "q"})
    assert reasoned[-1]["content"] == "[[ ## reasoning ## ]]\n"
    assert "`[[ ## answer ## ]]`" in reasoned[-2]["content"]  # the model must still write the later markers


def test_lean_format_leaves_out_only_the_system_message():
    full = PrefillChatAdapter().format(QA, [], {"document": "d", "question": "q"})
    lean = PrefillChatAdapter(instructions=False).format(QA, [], {"document": "d", "question": "q"})
    assert full[0]["role"] == "system" and lean == full[1:]


def test_predict_sends_stop_strings_and_parses_with_dummy_lm():
    lm = DummyLM([{"answer": "blue"}])
    with dspy.context(lm=lm, adapter=PrefillChatAdapter()):
        prediction = dspy.Predict("question -> answer")(question="What color is the sky?", config={"stop": ["END"]})
    assert prediction.answer == "blue"
    stops = lm.history[-1]["kwargs"]["stop"]
    assert stops[0] == COMPLETED_MARKER
    assert "[[ ## question ## ]]" in stops and "END" in stops
    assert len(stops) == len(set(stops))
