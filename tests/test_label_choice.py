"""-o choice=likelihood: a label task's answer is the declared label the model finds most likely, calibrated against
its prior over the labels (smelt.programs.label_choice, smelt.lm.engine.continuation_scores)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import dspy
import pytest

from smelt.errors import SmeltError
from smelt.programs import label_choice
from smelt.programs.label_choice import (
    LabelChoice,
    calibrated_scores,
    chosen_index,
    content_free_prior,
    normalized_logprobs,
)
from smelt.programs.registry import get_task
from smelt.programs.task import Task

ROOT = Path(__file__).resolve().parents[1]
INQUIRY_ROUTING = ROOT / "examples" / "inquiry_routing.toml"


# --- the calibration arithmetic, on a fixed table ----------------------------------------------------------------

def test_calibration_turns_the_choice_away_from_the_labels_the_model_favours_anyway():
    # log p(label | x) for labels (A, B, C), and for two content-free inputs.
    given_input = [-1.0, -1.5, -3.0]
    content_free = [[-0.5, -2.0, -2.0], [-0.7, -1.8, -2.5]]
    # By hand: run 1 normalised = e^-0.5, e^-2, e^-2 over their sum 0.8772 = (0.6914, 0.1543, 0.1543);
    # run 2 = e^-0.7, e^-1.8, e^-2.5 over 0.7440 = (0.6674, 0.2222, 0.1103); averaged = (0.6795, 0.1882, 0.1323).
    prior = content_free_prior(content_free)
    assert prior == pytest.approx([0.6795, 0.1882, 0.1323], abs=1e-4)
    # The input, normalised: e^-1, e^-1.5, e^-3 over 0.6408 = (0.5741, 0.3482, 0.0777): A wins uncalibrated.
    uncalibrated = calibrated_scores(given_input, None)
    assert [math.exp(v) for v in uncalibrated] == pytest.approx([0.5741, 0.3482, 0.0777], abs=1e-4)
    assert max(range(3), key=uncalibrated.__getitem__) == 0
    # Calibrated: log(0.5741 / 0.6795) = -0.168, log(0.3482 / 0.1882) = 0.615, log(0.0777 / 0.1323) = -0.532: B wins.
    calibrated = calibrated_scores(given_input, prior)
    assert calibrated == pytest.approx([-0.168, 0.615, -0.532], abs=1e-3)
    assert max(range(3), key=calibrated.__getitem__) == 1


def test_normalised_label_probabilities_sum_to_one():
    assert sum(math.exp(v) for v in normalized_logprobs([-20.0, -21.5, -35.0])) == pytest.approx(1.0)


def test_a_temperature_draws_the_label_from_the_calibrated_scores_the_same_way_for_the_same_seed():
    scores = [0.0, math.log(3.0)]  # softmax at temperature 1: 0.25, 0.75
    inputs = {"inquiry": "My tax bill is wrong."}
    assert chosen_index(scores, {"temperature": 0.0, "seed": 1}, inputs) == 1
    draws = [chosen_index(scores, {"temperature": 1.0, "seed": seed}, inputs) for seed in range(400)]
    assert draws == [chosen_index(scores, {"temperature": 1.0, "seed": seed}, inputs) for seed in range(400)]
    assert 0.68 < sum(draws) / len(draws) < 0.82
    colder = [chosen_index(scores, {"temperature": 0.25, "seed": seed}, inputs) for seed in range(400)]
    assert sum(colder) / len(colder) > 0.95  # 3^4 : 1, i.e. 0.988


# --- the program: which predictors choose, what is refused, what is saved -----------------------------------------

def _task_file(tmp_path: Path, predictor: str, labels: bool = True) -> str:
    path = tmp_path / "route.toml"
    path.write_text(f'''
signature = "inquiry -> department"
predictor = "{predictor}"
[fields.department]
desc = "the department"
{'labels = ["taxes", "roads_and_parks"]' if labels else ""}
''', encoding="utf-8")
    return str(path)


def test_a_task_files_likelihood_predictor_is_a_plain_predictor_choosing_by_likelihood(tmp_path):
    task = get_task(_task_file(tmp_path, "likelihood"))
    assert task.default_options()["choice"] == "likelihood" and task.default_options()["predictor"] == "predict"
    [(name, predictor)] = task.program().named_predictors()
    assert name == "predict" and isinstance(predictor, LabelChoice)
    assert predictor.labels == ("taxes", "roads_and_parks")
    assert type(task.program({"choice": "generate"}).predict) is dspy.Predict  # -o choice=generate still wins
    assert task.sweep_space == {"choice": ["likelihood", "generate"]}


def test_likelihood_needs_labels_and_a_predictor_that_writes_the_answer_alone(tmp_path):
    with pytest.raises(SmeltError, match=r"route\.toml: predictor: \"likelihood\" chooses among the answer's labels"):
        get_task(_task_file(tmp_path, "likelihood", labels=False))
    task = get_task(_task_file(tmp_path, "predict"))
    with pytest.raises(SmeltError, match=r"-o choice=likelihood: .* writes reasoning beside its answer \(department\)"
                                         r".*-o predictor=predict"):
        task.program({"choice": "likelihood", "predictor": "cot"})


def test_a_model_behind_a_server_is_refused_in_one_line_at_the_first_call(tmp_path):
    program = get_task(_task_file(tmp_path, "likelihood")).program()
    with dspy.context(lm=dspy.LM("openai/gpt-4o-mini", api_key="not-used")), pytest.raises(SmeltError) as refused:
        program(inquiry="My tax bill is wrong.")
    assert str(refused.value).startswith("-o choice=likelihood needs a model smelt runs in process")
    assert "\n" not in str(refused.value) and "-o choice=generate" in str(refused.value)


def test_the_chosen_predictor_saves_and_loads_its_demos_as_dspy_json(tmp_path):
    task = get_task(_task_file(tmp_path, "likelihood"))
    program = task.program()
    program.predict.demos = [dspy.Example(inquiry="Pothole on Route 12.", department="roads_and_parks")]
    program.save(str(tmp_path / "program.json"))
    reloaded = task.program()
    reloaded.load(str(tmp_path / "program.json"))
    assert isinstance(reloaded.predict, LabelChoice)
    assert [dict(demo) for demo in reloaded.predict.demos] == [{"inquiry": "Pothole on Route 12.",
                                                                "department": "roads_and_parks"}]


# --- on the real embedded model ---------------------------------------------------------------------------------

def _inquiry_demos(count: int) -> list[dspy.Example]:
    """The first train inquiry of each label, as compile's labeled demos are: one per label."""
    seen, demos = set(), []
    for line in (ROOT / "examples" / "inquiry_routing" / "train.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["department"] not in seen and len(demos) < count:
            seen.add(row["department"])
            demos.append(dspy.Example(inquiry=row["inquiry"], department=row["department"]))
    return demos


def test_continuation_scores_equal_a_full_forward_pass(embedded_model):
    import torch

    from smelt.lm.engine.continuation_scores import continuation_logprobs
    from smelt.lm.prefill_adapter import PrefillChatAdapter
    from smelt.lm.rendering import encode_prompt

    model, tokenizer = embedded_model.model, embedded_model.tokenizer
    task = get_task(str(INQUIRY_ROUTING))
    messages = PrefillChatAdapter().format(task.signature, _inquiry_demos(6), {"inquiry": "道路の街灯が消えています。"})
    prompt = encode_prompt(tokenizer, messages)
    # Longer than the sliding window of Gemma 3's local layers: their cache keeps only the window after the prompt.
    assert len(prompt) > model.config.sliding_window
    labels = ["taxes\n\n", "tax\n\n", "roads_and_parks\n\n"]
    continuations = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in labels]
    scored = continuation_logprobs(model, prompt, continuations, tokenizer.pad_token_id)
    for tokens, got in zip(continuations, scored, strict=True):
        with torch.inference_mode():
            logits = model(torch.tensor([prompt + tokens])).logits[0].float()
        full = torch.log_softmax(logits, dim=-1)
        expected = [full[len(prompt) - 1 + i, token].item() for i, token in enumerate(tokens)]
        assert got == pytest.approx(expected, abs=1e-4)


class RouteInquiry(dspy.Signature):
    """Name the department that handles a resident's inquiry."""

    inquiry: str = dspy.InputField()
    department: str = dspy.OutputField()


def test_a_label_that_is_a_prefix_of_another_wins_only_when_the_answer_ends_there(embedded_lm, monkeypatch):
    from smelt.lm.engine.continuation_scores import score_continuations
    from smelt.lm.rendering import encode_prompt

    task = Task(name="prefix_labels", description="labels where one begins another", signature=RouteInquiry,
                make_program=lambda options: dspy.Predict(RouteInquiry), labels=("roads", "roads_and_parks", "taxes"))
    program = task.program({"choice": "likelihood"})
    assert isinstance(program, LabelChoice)
    program.demos = [dspy.Example(inquiry="There is a deep pothole on Route 12.", department="roads_and_parks"),
                     dspy.Example(inquiry="How do I pay my property tax?", department="taxes"),
                     dspy.Example(inquiry="A fallen tree blocks the park path.", department="roads_and_parks")]
    inquiry = "The street light on Midori Street has been out for a week."
    engine = embedded_lm.engine
    # Without the answer's end, "roads" (one token) is always at least as likely as "roads_and_parks" (which starts
    # with it): the prefix would win whatever the model meant.
    tokenizer = engine.tokenizer
    prompt = encode_prompt(tokenizer, embedded_lm.adapter.format(RouteInquiry, program.demos, {"inquiry": inquiry}))
    bare = [tokenizer(label, add_special_tokens=False)["input_ids"] for label in ("roads", "roads_and_parks")]
    assert bare[1][: len(bare[0])] == bare[0]
    roads, roads_and_parks = (sum(scores) for scores in score_continuations(engine, prompt, bare))
    assert roads > roads_and_parks

    calls = []
    monkeypatch.setattr(label_choice, "score_continuations",
                        lambda *args: calls.append(args[1]) or score_continuations(*args))
    trace = []
    with embedded_lm.context(), dspy.context(trace=trace):
        assert program(inquiry=inquiry).department == "roads_and_parks"
        assert len(calls) == 3  # the input, then the prior: each input field "N/A", then empty
        assert program(inquiry="Who repairs the swings in Chuo Park?").department in task.labels
    assert len(calls) == 4  # the prior is kept for these demos: one prompt pass per answer from now on
    assert [(predictor, inputs["inquiry"]) for predictor, inputs, _ in trace][0] == (program, inquiry)  # bootstrap
    assert trace[0][2].department == "roads_and_parks"


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=folder, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def _answers(path: Path) -> dict:
    return {record["id"]: record["prediction"] for record in map(json.loads, path.read_text().splitlines())}


def test_compile_and_eval_choose_labels_by_likelihood_through_the_cli(tmp_path):
    runs = tmp_path / "runs"
    _cli(tmp_path, "compile", str(INQUIRY_ROUTING), "-o", "choice=likelihood", "--max-train", "6", "--max-dev", "1",
         "--max-test", "4", "--latency-sample", "0", "--runs-root", str(runs))
    [run_dir] = (runs / "inquiry_routing").iterdir()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["program_options"]["choice"] == "likelihood"
    labels = set(get_task(str(INQUIRY_ROUTING)).answer_labels)
    compiled = _answers(run_dir / "eval" / "test.jsonl")
    assert len(compiled) == 4 and set(compiled.values()) <= labels
    assert set(_answers(run_dir / "eval" / "baseline.test.jsonl").values()) <= labels
    assert len(json.loads((run_dir / "program.json").read_text())["predict"]["demos"]) == 6

    _cli(tmp_path, "eval", "--program", str(run_dir), "--max-test", "4", "--latency-sample", "0", "--runs-root",
         str(runs))
    [eval_dir] = [path for path in (runs / "inquiry_routing").iterdir() if path.name.endswith("-eval")]
    assert _answers(eval_dir / "eval" / "test.jsonl") == compiled  # the reloaded program decodes the same
