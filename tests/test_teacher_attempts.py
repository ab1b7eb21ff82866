"""``distill --teacher-attempts N``: a train input the teacher missed is tried again, sampled, until a trace passes.

The attempt loop and its SFT rows run on a scripted model that answers by the request's temperature and seed (the
plumbing); the real CLI then distills a user's two-step task (tests/data/two_step_notices.py) on the embedded
model, and summary.json's per-predictor counts match sft.jsonl."""

import json
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import dspy
import pytest
from dspy.lm15 import Message, Response, TextPart, Usage

from smelt.commands.teacher import Teacher, build_sft_set, sft_set_account, sft_set_lines
from smelt.eval.evaluate import evaluate
from smelt.eval.judge import resolve_metric
from smelt.lm.build import ResolvedLM
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.lm.specs import parse_spec
from smelt.programs.registry import get_task

ROOT = Path(__file__).resolve().parents[1]
TASK_FILE = ROOT / "tests" / "data" / "two_step_notices.py"
TASK = get_task(f"{TASK_FILE}:task")


class ScriptedEngine:
    """Answers the find step with the notice's sentence that holds ``correct[question]`` and the answer step with
    it, but only on the attempt ``passes_at[question]`` names (read from the request: greedy is attempt 1, a sampled
    request's seed ends in its attempt); any other attempt answers 'no idea'. ``seen`` keeps (temperature, seed)."""

    def __init__(self, correct: dict[str, str], passes_at: dict[str, int]):
        self.correct, self.passes_at, self.seen = correct, passes_at, []

    def complete(self, request) -> Response:
        config = request.config
        self.seen.append((config.temperature, config.seed))
        attempt = 1 if not config.temperature else config.seed % 1000
        prompt = "\n".join(m.text or "" for m in request.messages)
        question = next(q for q in self.correct if q in prompt)
        right = self.passes_at.get(question) == attempt
        if "[[ ## notice ## ]]" in prompt:  # the find step's prompt
            notice = prompt.split("[[ ## notice ## ]]")[-1]
            sentence = next((s for s in notice.split(". ") if self.correct[question] in s), "nothing")
            text = f"{sentence if right else 'Nothing here'}\n\n[[ ## completed ## ]]"
        else:
            text = f"{self.correct[question] if right else 'no idea'}\n\n[[ ## completed ## ]]"
        return Response(id=None, model="scripted", message=Message.assistant([TextPart(text)]), finish_reason="stop",
                        usage=Usage(input_tokens=10, output_tokens=3, total_tokens=13))

    def close(self):
        pass


def _teach(tmp_path, passes_at: dict[str, int], attempts: int, use_labels: bool = True):
    train = list({ex.question: ex for ex in TASK.shipped_data().train}.values())[:4]  # the engine tells them apart
    engine = ScriptedEngine({ex.question: ex.answer for ex in train},
                            {train[i].question: at for i, at in passes_at.items()})
    # A model name of its own: DSPy's response cache (on) must key each attempt apart, not answer from a past run.
    lm = dspy.LM(f"smelt/scripted-{uuid.uuid4().hex}", engine=engine, temperature=0.0, max_tokens=40, cache=True)
    resolved = ResolvedLM(parse_spec("gemma-3-270m"), lm, PrefillChatAdapter(), engine)
    program = TASK.program(TASK.default_options())
    metric = resolve_metric("f1", TASK)
    options = SimpleNamespace(teacher_attempts=attempts, teacher_temperature=0.7, min_score=0.5, seed=3,
                              use_labels=use_labels, student_instructions=False, synthetic=0)

    def score(program, lm, examples, name):
        return evaluate(program, examples, metric=metric, lm=lm, threads=2, out_path=tmp_path / f"{name}.jsonl")

    logged = []
    rows = build_sft_set(tmp_path / "sft.jsonl", TASK, Teacher(program, resolved, {}, "scripted"), program, train,
                         None, options, score=score, log=logged.append)
    return train, rows, engine, sft_set_account(rows, len(train), program, options), logged


def test_a_missed_input_is_tried_again_sampled_and_every_step_of_its_passing_trace_teaches(tmp_path):
    # input 0 passes at once, 1 on the second attempt, 2 on the third, 3 never.
    train, rows, engine, account, logged = _teach(tmp_path, {0: 1, 1: 2, 2: 3}, attempts=3)

    teacher_rows = [r for r in rows if r["source"] == "teacher"]
    assert [(r["id"], r["predictor"], r["attempt"]) for r in teacher_rows] == [
        (train[0].id, "find", 1), (train[0].id, "answer", 1), (train[1].id, "find", 2), (train[1].id, "answer", 2),
        (train[2].id, "find", 3), (train[2].id, "answer", 3)]
    find_row = teacher_rows[2]
    assert train[1].answer in find_row["completion"] and "[[ ## notice ## ]]" in find_row["messages"][0]["content"]
    assert [r["source"] for r in rows if r["id"] == train[3].id] == []  # no gold sentence: a label teaches no step

    assert account["sft_predictors"] == {"find": 3, "answer": 3}
    assert account["teacher_attempts"] == {"max": 3, "temperature": 0.7, "inputs": 4, "kept": 3,
                                           "kept_by_attempt": {"1": 1, "2": 1, "3": 1}, "runs": 1 + 2 + 3 + 3}
    assert sft_set_lines(account) == [
        "SFT rows: find 3, answer 3 (6 in all: teacher 6)",
        "Teacher: kept 3 of 4 train inputs in 9 runs (kept at attempt 1: 1, 2: 1, 3: 1; later attempts sampled at "
        "temperature 0.7)"]

    # Each attempt ran only on the inputs still missing, into its own records file.
    ids = {name: [json.loads(line)["id"] for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
           for name in ("teacher.train", "teacher.train.attempt-2", "teacher.train.attempt-3")}
    assert sorted(ids["teacher.train"]) == sorted(ex.id for ex in train)
    assert sorted(ids["teacher.train.attempt-2"]) == sorted(ex.id for ex in train[1:])
    assert sorted(ids["teacher.train.attempt-3"]) == sorted(ex.id for ex in train[2:])
    assert not (tmp_path / "teacher.train.attempt-4.jsonl").exists()
    # Greedy first, then sampled with a seed per attempt (2 steps x 4 inputs, then 2 x 3, then 2 x 2 model calls).
    assert engine.seen.count((0.0, None)) == 8
    assert engine.seen.count((0.7, 3002)) == 6 and engine.seen.count((0.7, 3003)) == 4
    assert any("teacher attempt 3 of 3: 2 train inputs below --min-score 0.5" in line for line in logged)


def test_one_attempt_keeps_only_the_first_answers_and_a_second_build_reads_the_set_back(tmp_path):
    train, rows, engine, account, _ = _teach(tmp_path, {0: 1, 1: 2}, attempts=1)
    assert {r["id"] for r in rows} == {train[0].id}
    assert account["teacher_attempts"]["kept_by_attempt"] == {"1": 1} and account["teacher_attempts"]["runs"] == 4
    assert all(temperature == 0.0 for temperature, _ in engine.seen)
    assert not list(tmp_path.glob("teacher.train.attempt-*.jsonl"))


def test_no_passing_trace_in_any_attempt_is_one_clear_error(tmp_path):
    from smelt.errors import SmeltError

    with pytest.raises(SmeltError, match=r"on none of the train inputs in 2 attempt\(s\) each; raise "
                                         r"--teacher-attempts"):
        _teach(tmp_path, {}, attempts=2, use_labels=False)


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=folder, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.parametrize(("command", "flag", "value", "said"), [
    (["distill"], "--teacher-attempts", "0", "--teacher-attempts 0: use 1 or more"),
    (["distill"], "--teacher-temperature", "0", "--teacher-temperature 0.0: use a temperature above 0 and at most 2"),
    (["sweep", "--stage", "distill"], "--teacher-attempts", "-1", "--teacher-attempts -1: use 1 or more"),
])
def test_a_bad_attempt_option_is_one_line_before_any_model_loads(tmp_path, command, flag, value, said):
    result = cli(tmp_path, *command, f"{TASK_FILE}:task", "--student", "gemma-3-270m", "--teacher", "gemma-3-270m",
                 flag, value)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {said}")
    assert not (tmp_path / "runs").exists()


def test_distill_of_a_two_step_task_counts_its_rows_per_predictor(tmp_path):
    """The real CLI on the embedded model (the uncompiled program as teacher): 4 train inputs, up to 2 attempts each,
    one epoch."""
    result = cli(tmp_path, "distill", f"{TASK_FILE}:task", "--student", "gemma-3-270m", "--teacher", "gemma-3-270m",
                 "--teacher-attempts", "2", "--max-train", "4", "--max-dev", "0", "--max-test", "1", "--epochs", "1",
                 "--batch-size", "4", "--lora-r", "4", "--threads", "4", "--latency-sample", "0")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    [run_dir] = tmp_path.glob("runs/two_step_notices/*-distill")
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "sft.jsonl").read_text(encoding="utf-8").splitlines()]

    per_predictor = summary["sft_predictors"]
    assert set(per_predictor) == {"find", "answer"}
    assert per_predictor == {name: sum(r["predictor"] == name for r in rows) for name in ("find", "answer")}
    attempts = summary["teacher_attempts"]
    kept = {r["id"] for r in rows if r["source"] == "teacher"}
    assert attempts["max"] == 2 and attempts["inputs"] == 4 and attempts["kept"] == len(kept) >= 1
    assert sum(attempts["kept_by_attempt"].values()) == len(kept)
    assert attempts["kept_by_attempt"] == {str(k): len({r["id"] for r in rows if r.get("attempt") == k})
                                           for k in (1, 2)}
    # Records on disk: attempt k ran on the inputs attempt k-1 missed, and no input kept at k ran again after it.
    runs = 0
    for k in (1, 2):
        path = run_dir / "eval" / ("teacher.train.jsonl" if k == 1 else f"teacher.train.attempt-{k}.jsonl")
        ran = {json.loads(line)["id"] for line in path.read_text().splitlines()} if path.exists() else set()
        runs += len(ran)
        assert not ran & {r["id"] for r in rows if r["source"] == "teacher" and r["attempt"] < k}
    assert attempts["runs"] == runs
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["options"]["teacher_attempts"] == 2 and manifest["options"]["teacher_temperature"] == 0.7
    printed = result.stdout
    assert f"SFT rows: find {per_predictor['find']}, answer {per_predictor['answer']}" in printed
    assert f"Teacher: kept {attempts['kept']} of 4 train inputs in {runs} runs" in printed
    assert "SFT rows: find" in (run_dir / "report.md").read_text()
