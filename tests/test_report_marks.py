"""What the reports say beside the numbers: the radar's grounding axis does not reward an answer that repeats its
input (smelt.eval.copied_answers), reused and cached numbers are marked, the examples table names the task's own
input, and a distilled student's page does not show instructions its prompt never carries."""

import json

from smelt.eval.copied_answers import copied_share, repeats_input
from smelt.eval.reports.chart_data import grounded_share, radar_values
from smelt.eval.reports.html import render_html
from smelt.eval.reports.run_records import Program, Report
from smelt.eval.reports.tables import markdown_table, text_table

NOTICES = {
    "t01": ("【住民税】令和8年度第1期の納期限は令和8年6月30日です。", "2026-06-30"),
    "t02": ("Applications for the solar panel subsidy must arrive by 30 September 2026.", "2026-09-30"),
    "t03": ("保育所の入所申込（令和9年4月入所分）は令和8年11月13日までです。", "2026-11-13"),
    "t04": ("Submit the disability services renewal by November 30, 2026 to keep receiving support.", "2026-11-30"),
}


def _records(answers: dict[str, str], invented: dict[str, list] | None = None) -> list[dict]:
    return [{"id": i, "inputs": {"notice": NOTICES[i][0]}, "gold": NOTICES[i][1], "prediction": answer,
             "score": float(answer == NOTICES[i][1]), "invented": (invented or {}).get(i, [])}
            for i, answer in answers.items()]


def test_an_answer_that_repeats_its_input_is_a_copy_but_an_extract_is_not():
    notice = NOTICES["t03"][0]
    assert copied_share("保育所の入所申込（令和9年4月入所分）は", notice) == 1.0
    assert repeats_input("保育所の入所申込（令和9年4月入所分）は", {"notice": notice}, "2026-11-13")
    assert not repeats_input("2026-11-13", {"notice": notice}, "2026-11-13")
    document = "The pool is open from 9:00 a.m. to 5:00 p.m. every day except Mondays."
    assert not repeats_input("9:00 a.m. to 5:00 p.m.", {"document": document}, "9:00 a.m. to 5:00 p.m.")
    assert repeats_input(document, {"document": document, "question": "When is it open?"}, "9:00 a.m. to 5:00 p.m.")
    assert not repeats_input("It opens at nine and closes at five, every day but Monday.", {"document": document})


def test_a_program_that_repeats_its_input_is_not_the_most_grounded():
    echo = _records({i: notice[: len(notice) // 2 + 12] for i, (notice, _) in NOTICES.items()})
    right = _records({"t01": "2026-06-30", "t02": "2026-09-30", "t03": "2026-11-13", "t04": "2026-11-03"},
                     invented={"t04": ["2026-11-03"]})
    assert all(not r["invented"] for r in echo)  # nothing invented: grounding alone would rate it best
    assert grounded_share(echo) == 0.0 and grounded_share(right) == 0.75
    radar = radar_values([Program("echo", echo), Program("dates", right)], "fact")
    axis = radar.axes.index("grounding")
    assert radar.values[0][axis] < radar.values[1][axis]
    caption = next(line for line in radar.scaling if line.startswith("grounding"))
    assert "copied from the input" in caption and "80%" in caption


def test_blank_answers_and_unchecked_records_are_no_grounding():
    assert grounded_share(_records({"t01": " ", "t02": "2026-09-30"})) == 0.5
    assert grounded_share([{"id": "x", "prediction": "a", "invented": None}]) is None


def test_reused_and_cached_numbers_are_marked_in_every_table():
    teacher = {"metric": "f1", "examples": 36, "score": 0.172, "cached_examples": 36, "usage_reused": 36,
               "latency_s_per_example": 4.14, "prompt_tokens_per_example": 750.0, "lm_calls": 0, "wall_s": 0.1}
    student = {"metric": "f1", "examples": 36, "score": 0.467, "cached_examples": 0, "latency_s_per_example": 1.27,
               "prompt_tokens_per_example": 380.0, "lm_calls": 36, "wall_s": 20.0}
    partly = teacher | {"cached_examples": 10, "usage_reused": 10}
    for table in (text_table({"teacher": teacher, "distilled": student, "partly": partly}),
                  markdown_table({"teacher": teacher, "distilled": student, "partly": partly})):
        assert "4.14 (reused)" in table and "750 (reused)" in table and "0 (36 cached)" in table
        assert "1.27 " in table and "1.27 (" not in table and "36 (" not in table  # measured here: unmarked
        assert "4.14 (10 of 36 reused)" in table


def test_the_examples_table_names_the_input_and_no_question():
    records = _records({"t01": "2026-06-30", "t02": "2026-09-31"})
    report = Report(title="compile due_dates", subtitle="x", columns={}, split="test", metric="fact",
                    programs=[Program("compiled test", records)])
    page = render_html(report)
    assert "<th>notice</th>" in page and "<th>question</th>" not in page


def test_a_distilled_students_page_shows_no_instructions_it_never_sends(tmp_path):
    state = {"predict": {"demos": [], "signature": {"instructions": "Give the deadline as YYYY-MM-DD."}}}
    for name, instructions in (("distill", False), ("compile", None)):
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "program.json").write_text(json.dumps(state), encoding="utf-8")
        program = {"spec": "gemma-3-270m", **({"instructions": instructions} if instructions is False else {})}
        (run_dir / "manifest.json").write_text(json.dumps({"models": {"program": program}}), encoding="utf-8")
    report = Report(title="t", subtitle="s", columns={}, split="test", programs=[],
                    program_files=[("The distilled student's program (zero-shot)", tmp_path / "distill" /
                                    "program.json")])
    page = render_html(report)
    assert "Give the deadline as YYYY-MM-DD." not in page and "carries no instructions" in page
    report.program_files = [("The compiled program", tmp_path / "compile" / "program.json")]
    page = render_html(report)
    assert "Give the deadline as YYYY-MM-DD." in page and "carries no instructions" not in page


def test_a_malformed_answer_scores_nothing_on_the_radar():
    records = _records({"t01": "June 30, 2026", "t02": "2026-09-30"})  # the same date as t01's gold, malformed
    records[0]["malformed"], records[1]["malformed"] = ["due_date"], []
    radar = radar_values([Program("dates", records)], "fact")
    values = dict(zip(radar.axes, radar.values[0], strict=True))
    assert values["fact"] == 0.5 and values["exact match"] == 0.5
    del records[0]["malformed"]
    assert dict(zip(radar.axes, radar_values([Program("d", records)]).values[0], strict=True))["fact"] == 1.0
