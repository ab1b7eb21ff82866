"""--synthetic: the real embedded model writes and answers new questions; the judge's rating decides what is kept.

The judge is a DummyLM here so each test controls its verdict; question writing and answering run on the model.
"""

import dspy
from dspy.adapters import ChatAdapter
from dspy.utils.dummies import DummyLM

from smelt.lm import lm_for_spec, parse_spec
from smelt.lm.build import ResolvedLM
from smelt.optimizers.distill.sft_examples import example_rows
from smelt.optimizers.distill.synthetic_examples import write_synthetic_examples
from smelt.programs.registry import get_task

DOCUMENT = ("北川市立図書館は毎月第2月曜日が休館日です。開館時間は9時から19時です。"
            "本は1人10冊まで、2週間借りられます。")
ASKED = "休館日はいつですか？"


def _synthesize(rating: str, wanted: int):
    task = get_task("doc_qa")
    program, teacher_lm = task.program(), lm_for_spec("gemma-3-270m", device="cpu", cache=False)
    train = [dspy.Example(id="t1", document=DOCUMENT, question=ASKED, answer="毎月第2月曜日").with_inputs(
        "document", "question")]
    verdicts = DummyLM([{"rationale": "checked against the document", "rating": rating}] * (3 * wanted))
    judge = ResolvedLM(parse_spec("openai/stand-in-judge"), verdicts, ChatAdapter())
    logged = []
    written = write_synthetic_examples(task, program, teacher_lm, train, judge, count=wanted, log=logged.append)
    rows = [row for example, outputs in written
            for row in example_rows(task, program, example, outputs, "synthetic", False)]
    return rows, logged


def test_judged_synthetic_questions_become_lean_sft_rows():
    rows, logged = _synthesize("9", wanted=2)
    assert 1 <= len(rows) <= 2, logged
    questions = [row["messages"][-2]["content"].rsplit("[[ ## question ## ]]", 1)[1].strip() for row in rows]
    assert all(q and q != ASKED for q in questions) and len(set(questions)) == len(questions)
    for row in rows:
        assert row["source"] == "synthetic" and row["id"].startswith("synthetic-")
        assert row["messages"][0]["role"] == "user" and "北川市立図書館" in row["messages"][0]["content"]
        assert row["completion"].strip() and row["completion"].endswith("[[ ## completed ## ]]")
    assert logged[-1].startswith(f"[smelt] synthetic: kept {len(rows)} of ")


def test_a_low_judge_rating_keeps_nothing():
    rows, logged = _synthesize("3", wanted=1)
    assert rows == []
    assert logged[-1].startswith("[smelt] synthetic: kept 0 of ")
