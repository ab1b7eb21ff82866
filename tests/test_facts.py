"""Facts in text (smelt.eval.facts): extraction, the `fact` metric, grounding and NAME+grounded."""

import contextlib
from types import SimpleNamespace

import dspy
import pytest

from smelt.errors import SmeltError
from smelt.eval.evaluate import evaluate, evaluate_example
from smelt.eval.fact_matching import invented, missing_facts
from smelt.eval.facts import extract_facts
from smelt.eval.judge import METRIC_NAMES, GroundedMetric, JudgeMetric, metric_name, resolve_metric
from smelt.eval.metrics import METRICS, f1
from smelt.eval.metrics import fact as fact_score
from smelt.eval.reports.tables import markdown_table, text_table
from smelt.programs.registry import get_task

DOC_QA = get_task("doc_qa")
LM = SimpleNamespace(context=contextlib.nullcontext)  # a ResolvedLM-shaped stand-in: the fakes call no model


def facts(text: str) -> list[str]:
    return [str(fact) for fact in extract_facts(text)]


def shipped(example_id: str) -> dspy.Example:
    splits = DOC_QA.shipped_data()
    return next(ex for ex in splits.train + splits.dev + splits.test if ex.id == example_id)


# --- extraction -------------------------------------------------------------------------------------------


def test_japanese_era_dates_become_gregorian():
    assert facts("令和8年8月31日") == ["date:2026-08-31"]
    assert facts("令和元年5月1日") == ["date:2019-05-01"]  # 元年 = the era's year 1
    assert facts("平成元年1月8日") == ["date:1989-01-08"]
    assert facts("平成30年4月") == ["date:2018-04"]
    assert facts("昭和64年1月7日") == ["date:1989-01-07"]
    assert facts("令和8年度") == ["date:2026"]


@pytest.mark.parametrize("text", ["2026-08-31", "2026/8/31", "2026.8.31", "2026年8月31日", "２０２６年８月３１日",
                                  "August 31, 2026", "Aug. 31st, 2026", "31 August 2026", "8/31/2026",
                                  "令和８年８月３１日"])
def test_one_date_in_every_form(text):
    assert facts(text) == ["date:2026-08-31"]


def test_dates_without_a_year_and_fractions():
    assert facts("8月31日（月）") == facts("August 31") == facts("31 August") == facts("8/31（月）") == ["date:--08-31"]
    assert facts("August 2026") == ["date:2026-08"]
    assert facts("1/3 of the cost") == ["number:1", "number:3"]  # no weekday after it: a fraction, not a date


def test_month_ends_fiscal_year_ends_and_kanji_amounts():
    assert facts("令和７年度末") == facts("2025年度末") == facts("the end of March 2026") == ["date:2026-03-31"]
    assert facts("2026年2月末") == facts("end of February 2026") == ["date:2026-02-28"]
    assert facts("3月末日まで") == ["date:--03-31"]
    assert facts("千二百円") == facts("1,200円") == ["amount:JPY 1200"]
    assert facts("三万五千円") == ["amount:JPY 35000"] and facts("二〇二六円") == ["amount:JPY 2026"]


def test_amounts_with_units_and_multipliers():
    for text in ("3万円", "30,000円", "30000 yen", "¥30,000", "３万円", "30,000 JPY"):
        assert facts(text) == ["amount:JPY 30000"], text
    assert facts("1億2000万円") == ["amount:JPY 120000000"]
    assert facts("３万５千円") == ["amount:JPY 35000"]
    assert facts("5千円") == ["amount:JPY 5000"]
    assert facts("$5") == facts("5 dollars") == ["amount:USD 5"]
    assert facts("3 million yen") == ["amount:JPY 3000000"]
    assert facts("3万人") == ["number:30000"]


def test_numbers_drop_separators_and_skip_identifiers():
    assert facts("１，２００人") == ["number:1200"]  # full-width digits and comma
    assert facts("Room 204, doc r03, 2nd floor, 37.5°C, 2.4%") == ["number:204", "number:2", "number:37.5",
                                                                   "number:2.4"]


@pytest.mark.parametrize("text", ["9:00", "9時", "午前9時", "9 a.m.", "9am", "9 o'clock", "午前９時"])
def test_nine_in_the_morning(text):
    assert "09:00" in extract_facts(text)[0].readings


def test_times():
    assert facts("17:30") == facts("午後5時半") == facts("5:30 p.m.") == facts("午後5時30分") == ["time:17:30"]
    assert extract_facts("9 a.m.")[0].readings == ("09:00",)  # marked: one reading
    assert extract_facts("9:00")[0].readings == ("09:00", "21:00")  # unmarked: either
    assert facts("正午") == facts("noon") == ["time:12:00"]
    assert facts("24時間利用できます") == ["number:24"]  # 24 hours, not a time of day


def test_phones_emails_urls():
    for text in ("03-1234-5678", "(03) 1234-5678", "+81-3-1234-5678", "電話０３－１２３４－５６７８", "0312345678"):
        assert facts(text) == ["phone:0312345678"], text
    assert facts("0120-555-318") == ["phone:0120555318"]
    assert facts("メールBosai@Example.jp。") == ["email:bosai@example.jp"]
    assert facts("詳しくはhttps://www.City.example.jp/pool/をご覧ください") == ["url:city.example.jp/pool"]
    assert facts("see www.city.example.jp/pool.") == facts("city.example.jp/pool") == ["url:city.example.jp/pool"]
    raw = extract_facts("詳しくはhttps://www.City.example.jp/pool/をご覧ください")[0].raw
    assert raw == "https://www.City.example.jp/pool/"  # as written


def test_facts_of_a_shipped_document():
    document = shipped("q001").document  # d01, English
    assert facts(document) == [
        "date:2025-04-01", "time:08:30", "amount:JPY 40", "number:10", "amount:JPY 80", "number:20",
        "phone:0120555318", "time:09:00", "time:17:00", "amount:JPY 500", "date:--12-30", "date:--01-03",
        "number:2", "number:204"]


# --- the fact metric ----------------------------------------------------------------------------------------


def test_a_wrong_date_scores_zero_though_f1_is_high():
    assert f1("令和8年6月1日", "令和8年8月31日") > 0.8
    assert fact_score("令和8年6月1日", "令和8年8月31日") == 0.0
    assert fact_score("令和8年8月31日", "令和8年8月31日") == 1.0
    example = shipped("q091")  # gold 令和7年7月1日
    assert fact_score("令和7年6月1日から", example.answer) == 0.0
    # The date matches whatever its notation: F1 of the answer with its date written as the reference writes it.
    assert fact_score("2025年7月1日から", example.answer) == pytest.approx(f1("令和7年7月1日から", example.answer))
    assert fact_score("2025年7月1日から", example.answer) > f1("2025年7月1日から", example.answer)


def test_fact_score_is_f1_in_the_reference_notation_when_the_facts_agree():
    assert fact_score("1200 yen", "1,200 yen") == 1.0
    assert fact_score("30,000円です", "3万円") == pytest.approx(f1("3万円です", "3万円"))  # 30,000円 = 3万円
    assert f1("30,000円です", "3万円") < fact_score("30,000円です", "3万円") < 1
    assert fact_score("by February 27", "February 27, 2026") > 0  # an answer may leave out the year
    assert fact_score("February 27, 2027", "February 27, 2026") == 0.0
    assert missing_facts("午前9時から", "9:00") == [] and fact_score("21:00", "9 a.m.") == 0.0
    assert fact_score("Within 30 days", "Within 30 days, by February 27, 2026") == 0.0  # the date is missing
    assert fact_score("two weeks", "2 weeks") == 1.0 * f1("two weeks", "2 weeks")  # a number word counts


@pytest.mark.parametrize("answer", ["令和8年6月30日", "令和８年６月３０日", "June 30, 2026", "30 June 2026",
                                    "2026/6/30", "2026年6月30日", "Jun. 30th, 2026"])
def test_a_date_in_another_notation_is_the_same_date(answer):
    assert fact_score(answer, "2026-06-30") == 1.0
    assert fact_score("2026-06-30", answer) == 1.0


def test_era_first_years_and_fiscal_year_ends():
    assert fact_score("令和元年5月1日", "2019-05-01") == 1.0
    assert fact_score("2026-03-31", "令和７年度末") == fact_score("2026-03-31", "the end of March 2026") == 1.0
    assert fact_score("2026-03-30", "令和７年度末") == 0.0
    assert fact_score("2027-03-31", "令和8年度末") == 1.0


@pytest.mark.parametrize("answer", ["1200円", "1,200円", "１，２００円", "千二百円", "1200 yen", "¥1,200"])
def test_an_amount_in_another_notation_is_the_same_amount(answer):
    assert fact_score(answer, "1,200円") == 1.0


def test_amounts_with_man_units():
    assert fact_score("1.2万円", "12,000円") == fact_score("12000 yen", "1.2万円") == 1.0
    assert fact_score("1.3万円", "12,000円") == 0.0
    assert fact_score("1,200", "1200") == 1.0


def test_fact_score_without_facts_is_f1():
    assert fact_score("the first Tuesday", "the first Tuesday of each month") == pytest.approx(
        f1("the first Tuesday", "the first Tuesday of each month"))
    assert fact_score("文書に記載がありません。", "文書に記載がありません。") == 1.0


def test_fact_is_a_metric_name():
    assert "fact" in METRIC_NAMES and METRICS["fact"]("令和8年6月1日", "令和8年8月31日") == 0.0
    metric = resolve_metric("fact", DOC_QA)
    example = dspy.Example(document="d", question="q", answer="令和8年8月31日").with_inputs("document", "question")
    assert metric(example, dspy.Prediction(answer="令和8年6月1日")) == 0.0
    assert metric(example, dspy.Prediction(answer="令和8年8月31日")) == 1.0
    assert metric(example, dspy.Prediction(answer="令和8年6月1日"), trace=[]) is False


# --- grounding ----------------------------------------------------------------------------------------------


def test_an_invented_url_and_date_are_flagged():
    example = shipped("q001")  # d01: 0120-555-318, 8:30 a.m., 40 yen, ...
    source = DOC_QA.source_of(example)
    answer = ("Call 0120-555-318 before 8:30 a.m.; bags cost 40 yen. Booking closes March 3, 2026: "
              "see https://city.example.jp/waste")
    assert invented(answer, source) == ["March 3, 2026", "https://city.example.jp/waste"]
    assert invented("500 yen per item, from April 1, 2025", source) == []  # numbers and dates of the document
    assert invented("Room 204 on the 2nd floor", source) == []


def test_a_japanese_date_and_a_phone_are_checked_against_the_document():
    example = shipped("q091")  # d07: 令和7年7月1日から..., 電話0198-23-4411
    source = DOC_QA.source_of(example)
    assert invented("令和7年7月1日", source) == [] and invented("2025年7月1日", source) == []
    assert invented("令和7年7月10日", source) == ["令和7年7月10日"]
    assert invented("午前9時から午後8時まで、電話0198-23-4411", source) == []
    assert invented("電話0198-23-4412", source) == ["0198-23-4412"]


def test_full_width_digits_in_the_source_match_half_width_in_the_answer():
    source = "受付は８月３１日（月）午前９時から。参加費は１，２００円、定員は３０名です。"
    assert invented("8月31日の9:00から、1,200円、30名", source) == []
    assert invented("8月31日の10:00から", source) == ["10:00"]


def test_a_date_the_source_states_in_another_form_is_not_invented():
    assert invented("2026-03-31", "旧図書館カードは令和７年度末をもって利用できなくなります。") == []
    assert invented("2026-03-31", "Applications close at the end of March 2026.") == []
    assert invented("2026-06-30", "児童手当の現況届は令和8年6月30日までにご提出ください。") == []
    assert invented("2026-06-30", "Submit it no later than 30 June 2026.") == []
    assert invented("1.2万円", "The fee is 12,000 yen.") == [] and invented("千二百円", "参加費は1,200円です。") == []
    assert invented("2026-03-30", "旧図書館カードは令和７年度末をもって利用できなくなります。") == ["2026-03-30"]


@pytest.mark.parametrize("answer", ["2026-06-31", "2026-14-14", "2026-02-29", "令和8年2月30日", "June 31, 2026",
                                    "6月31日"])
def test_an_impossible_date_is_flagged_even_when_the_source_writes_it(answer):
    assert facts(answer)[0].startswith("bad_date:")
    assert invented(f"by {answer}", f"The deadline is {answer}.") == [answer]


def test_what_is_no_bad_date():
    assert facts("2024-02-29") == ["date:2024-02-29"] and facts("2月29日") == ["date:--02-29"]  # a leap day
    assert facts("31/8/2026") == ["number:31", "number:8", "number:2026"]  # day first, perhaps: no date at all
    assert facts("March 45") == ["number:45"]
    assert facts("数千円") == []  # "several thousand yen" names no amount


def test_the_default_source_is_every_input_and_rag_qa_uses_its_passages():
    example = dspy.Example(document="Open until 17:00.", question="Is it open on May 5?", answer="x")
    assert DOC_QA.source_of(example) == "Open until 17:00.\nIs it open on May 5?"
    rag = get_task("rag_qa")
    question = dspy.Example(question="What does the pool charge?", answer="150 yen").with_inputs("question")
    prediction = dspy.Prediction(answer="150 yen", citations="r02", retrieved=["r02"], passages="[r02] 150 yen")
    assert rag.source_of(question, prediction) == "[r02] 150 yen\nWhat does the pool charge?"
    assert rag.source_of(question, dspy.Prediction(answer="150 yen")) is None  # nothing retrieved: no check


def test_rag_qa_predictions_carry_their_passages():
    rag = get_task("rag_qa")
    program = rag.program()
    program.answer = lambda **kwargs: dspy.Prediction(cited_answer="150 yen, call 045-000-0000 [r02]")
    example = rag.shipped_data().test[0]  # the junior high school fee at Aobahama Central Pool
    prediction = program(question=example.question)
    passages, _ = program.retrieve(example.question)
    assert prediction.passages == passages
    record = evaluate_example(program, example, resolve_metric("f1", rag), LM)
    assert record["invented"] == ["045-000-0000"] and record["score"] > 0


# --- NAME+grounded ------------------------------------------------------------------------------------------


class Answer:
    def __init__(self, answer):
        self.answer = answer

    def __call__(self, **inputs):
        return dspy.Prediction(answer=self.answer)


def test_grounded_metric_names():
    assert metric_name("f1+grounded", False) == "f1+grounded"
    assert metric_name("fact+grounded", False) == "fact+grounded"
    assert metric_name("judge+grounded", True) == "judge+grounded"
    with pytest.raises(SmeltError, match="judge model"):
        metric_name("judge+grounded", False)
    for bad in ("bleu+grounded", "grounded", "f1+ground", "+grounded"):
        with pytest.raises(SmeltError, match="NAME\\+grounded"):
            metric_name(bad, True)


def test_an_answer_with_an_invented_fact_scores_zero():
    example = shipped("q001")
    metric = resolve_metric("f1+grounded", DOC_QA)
    assert isinstance(metric, GroundedMetric) and metric.name == "f1+grounded" and metric.pass_mark == 0.5
    grounded, made_up = dspy.Prediction(answer="Monday and Thursday"), dspy.Prediction(answer="Monday, until 7 p.m.")
    assert metric(example, grounded) == resolve_metric("f1", DOC_QA)(example, grounded) == 1.0
    value, detail = metric.score(example, made_up)
    assert value == 0.0 and detail["invented"] == ["7 p.m."]
    assert resolve_metric("f1", DOC_QA)(example, made_up) > 0  # f1 alone does not mind
    assert metric(example, made_up, trace=[]) is False  # never a bootstrapped demo
    fact_grounded = resolve_metric("fact+grounded", DOC_QA)
    assert fact_grounded(example, grounded) == 1.0 and fact_grounded(example, made_up) == 0.0


def test_judge_grounded_does_not_ask_the_judge_about_an_invented_fact():
    class NoCalls:
        spec = SimpleNamespace(raw="stub")

        def context(self):
            raise AssertionError("the judge was asked")

    metric = resolve_metric("judge+grounded", DOC_QA, judge=NoCalls())
    assert isinstance(metric.base, JudgeMetric) and metric.pass_mark == metric.base.pass_mark
    assert metric.judge is metric.base.judge
    value, detail = metric.score(shipped("q001"), dspy.Prediction(answer="call 03-9999-9999"))
    assert value == 0.0 and detail["invented"] == ["03-9999-9999"]


def test_records_and_summary_count_invented_facts():
    examples = [shipped("q001"), shipped("q091"), shipped("q095")]
    answers = {"q001": "Mondays and Thursdays", "q091": "令和7年7月10日", "q095": ""}

    class Canned(dspy.Module):  # answers without a model
        def forward(self, document, question):
            return dspy.Prediction(answer=answers[next(ex.id for ex in examples if ex.question == question)])

    program = Canned()
    result = evaluate(program, examples, metric=resolve_metric("f1", DOC_QA), lm=LM, threads=1)
    by_id = {r["id"]: r for r in result.records}
    assert by_id["q001"]["invented"] == [] and by_id["q091"]["invented"] == ["令和7年7月10日"]
    assert by_id["q095"]["invented"] == []
    assert result.summary["invented_rate"] == 0.5  # of the two answered examples, one invents
    assert "judge" not in by_id["q091"]
    grounded = evaluate(program, examples, metric=resolve_metric("f1+grounded", DOC_QA), lm=LM, threads=1)
    assert {r["id"]: r["score"] for r in grounded.records}["q091"] == 0.0
    assert "judge" not in {r["id"]: r for r in grounded.records}["q091"]  # the reason is "invented"


def test_tables_show_the_invented_rate():
    columns = {"baseline": {"metric": "f1", "examples": 4, "score": 0.5, "invented_rate": 0.25},
               "compiled": {"metric": "f1", "examples": 4, "score": 0.6, "invented_rate": 0.0}}
    text = text_table(columns).splitlines()
    row = next(line for line in text if line.startswith("answers with invented facts"))
    assert row.split()[-2:] == ["0.250", "0.000"]
    assert "| answers with invented facts | 0.250 | 0.000 |" in markdown_table(columns)
    assert "invented" not in text_table({"old": {"metric": "f1", "examples": 4, "score": 0.5}})


def test_shipped_references_are_grounded_but_for_computed_sums():
    splits = DOC_QA.shipped_data()
    flagged = {ex.id: invented(ex.answer, DOC_QA.source_of(ex)) for ex in splits.train + splits.dev + splits.test}
    flagged = {key: value for key, value in flagged.items() if value}
    # a sum of fees or grants the document lists separately: stated nowhere, so flagged (see the facts docstring)
    assert flagged == {"q003": ["120 yen"], "q007": ["170,000 yen"], "q031": ["10万円"], "q043": ["2,100円"],
                       "q053": ["17,600 yen"], "q098": ["12万円"]}
