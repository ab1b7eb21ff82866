"""Search spaces: the defaults per stage, space files (YAML and TOML) and one clear error per mistake."""

import optuna
import pytest
from mistakes import ROOT

from smelt.errors import SmeltError
from smelt.optimizers.sweep.space import allowed_names, default_space, load_space
from smelt.programs.registry import get_task

DOC_QA_TASK = get_task("doc_qa")
DOC_QA = DOC_QA_TASK.default_options()
DOC_QA_SPACE = DOC_QA_TASK.sweep_space


def test_default_compile_space_fits_the_model():
    small = default_space("compile", DOC_QA_SPACE, capable_model=False)
    capable = default_space("compile", DOC_QA_SPACE, capable_model=True)
    assert set(small.params["optimizer"].choices) == {"none", "labeled", "bootstrap"}
    assert {"random_search", "mipro", "simba"} <= set(capable.params["optimizer"].choices)
    assert small.params["predictor"].value == "predict" and capable.params["predictor"].choices == ("predict", "cot")
    for name in ("placement", "context_chars", "top_k", "chunk_chars", "max_demos", "max_labeled_demos"):
        assert name in small.params


def test_a_space_file_overrides_entries_and_keeps_the_rest(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("optimizer: [labeled, bootstrap]\nlearning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}\n"
                    "r: {low: 4, high: 16, step: 4}\nepochs: 2\n", encoding="utf-8")
    base = default_space("distill", {}, capable_model=False)
    with pytest.raises(SmeltError, match="unknown parameter 'optimizer'.*allowed: r, alpha_ratio"):
        load_space(path, base, allowed_names("distill", {}))
    path.write_text("learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}\nr: {low: 4, high: 16, step: 4}\n"
                    "epochs: 2\n", encoding="utf-8")
    space = load_space(path, base, allowed_names("distill", {}))
    assert space.params["learning_rate"].log and space.params["epochs"].value == 2
    assert space.params["dropout"] == base.params["dropout"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = space.suggest(study.ask())
        assert 1e-5 <= params["learning_rate"] <= 1e-3 and params["r"] in (4, 8, 12, 16) and params["epochs"] == 2


def test_toml_space_file(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('optimizer = ["none", "labeled"]\n[top_k]\nlow = 1\nhigh = 3\n', encoding="utf-8")
    base = default_space("compile", DOC_QA_SPACE, capable_model=False)
    space = load_space(path, base, allowed_names("compile", DOC_QA))
    assert space.params["optimizer"].choices == ("none", "labeled") and space.params["top_k"].is_int
    params = space.suggest(optuna.create_study().ask())
    assert "num_candidates" not in params  # only sampled for random_search


@pytest.mark.parametrize("text, fragment", [
    ("top_k: {low: 5, high: 1}", "top_k: low 5 is above high 1"),
    ("top_k: {low: 1}", "top_k: a range needs both low and high"),
    ("context_chars: {low: 0, high: 900, log: true}", "context_chars: a log range needs low > 0"),
    ("optimizer: []", "optimizer: choices must be a non-empty list"),
    ("top_k: {low: 1, high: 3, spread: 2}", "top_k: unknown key(s) spread"),
    ("max_demos: {low: a, high: 3}", "max_demos: low and high must be numbers"),
    ("- just\n- a list", "a mapping of parameter names"),
    ("top_k: [1, 2\n", "not valid YAML"),
])
def test_bad_space_files_name_the_key(tmp_path, text, fragment):
    path = tmp_path / "space.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SmeltError) as error:
        load_space(path, default_space("compile", DOC_QA_SPACE, capable_model=False), allowed_names("compile", DOC_QA))
    assert fragment in str(error.value) and str(path) in str(error.value)


def test_space_file_errors_for_the_file_itself(tmp_path):
    base, allowed = default_space("compile", DOC_QA_SPACE, capable_model=False), allowed_names("compile", DOC_QA)
    with pytest.raises(SmeltError, match="no such file"):
        load_space(tmp_path / "missing.yaml", base, allowed)
    (tmp_path / "space.json").write_text("{}")
    with pytest.raises(SmeltError, match="use a .yaml, .yml or .toml file"):
        load_space(tmp_path / "space.json", base, allowed)
    (tmp_path / "bad.toml").write_text("top_k = [1,\n")
    with pytest.raises(SmeltError, match="not valid TOML"):
        load_space(tmp_path / "bad.toml", base, allowed)


INQUIRY = str(ROOT / "examples" / "inquiry_routing.toml")


def _space(task: str, **options):
    from smelt.commands.sweep_options import SweepOptions, space_for

    return space_for(SweepOptions(task=task, **options))


def test_every_compile_space_turns_the_constraint_and_a_label_task_its_choice():
    """constrain on and off for every task; choice only where the answer is a label and the model runs in process
    (a server gives no likelihood per label); --constrain/--no-constrain fix the constraint."""
    doc_qa, routing = _space("doc_qa"), _space(INQUIRY)
    assert doc_qa.params["constrain"].choices == (True, False) and "choice" not in doc_qa.params
    assert routing.params["choice"].choices == ("generate", "likelihood")
    assert _space(INQUIRY, constrain=False).params["constrain"].value is False
    served = _space(INQUIRY, lm="openai/local-model", api_base="http://127.0.0.1:9/v1")
    assert "choice" not in served.params and served.params["predictor"].choices == ("predict", "cot")
    assert "constrain" not in _space("doc_qa", stage="distill", student="gemma-3-270m").params


def test_choice_is_sampled_only_where_the_predictor_writes_just_the_answer():
    space = default_space("compile", {"predictor": ["predict", "cot"]}, capable_model=True,
                          decoding={"constrain": [True, False], "choice": ["generate", "likelihood"]})
    assert list(space.params)[-2:] == ["constrain", "choice"]  # after the predictor, which decides it
    fixed = {"optimizer": "labeled", "max_demos": 2, "max_labeled_demos": 2, "constrain": True}
    assert "choice" not in space.suggest(optuna.trial.FixedTrial({**fixed, "predictor": "cot"}))
    sampled = space.suggest(optuna.trial.FixedTrial({**fixed, "predictor": "predict", "choice": "likelihood"}))
    assert sampled["choice"] == "likelihood"


def test_sweep_no_constrain_holds_for_every_trial_and_the_default_is_in_its_space():
    from smelt.commands.sweep import _default_params
    from smelt.commands.sweep_options import SweepOptions, space_for
    from smelt.commands.sweep_trials import CompileStage

    for flag, expected in ((False, False), (True, True), (None, True)):
        options = SweepOptions(task="doc_qa", constrain=flag)
        stage = CompileStage(options, cache=False, log=lambda *a: None)
        _, program_options = stage._split_params({**stage.default_params(), "top_k": 3})
        assert program_options["constrain"] is expected and program_options["top_k"] == 3
        assert _default_params(stage, space_for(options))["constrain"] is expected  # the first trial


def test_a_task_s_own_compile_defaults_are_a_trial_of_its_study():
    """inquiry_routing's [compile] table asks for 6 labeled demos, past the default range 0..4: the range takes it,
    so the study's first trial is the task's default configuration."""
    from smelt.commands.sweep import _default_params
    from smelt.commands.sweep_options import SweepOptions, space_for
    from smelt.commands.sweep_trials import CompileStage

    options = SweepOptions(task=INQUIRY)
    space = space_for(options)
    assert get_task(INQUIRY).compile_defaults["max_labeled_demos"] == 6
    assert (space.params["max_labeled_demos"].low, space.params["max_labeled_demos"].high) == (0, 6)
    default = _default_params(CompileStage(options, cache=False, log=lambda *a: None), space)
    assert default["max_labeled_demos"] == 6 and default["choice"] == "generate"
