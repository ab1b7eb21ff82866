"""The prompt model of the optimizers that write instructions (--prompt-lm): the one-call check before the optimizer
starts, the adapter each prompt-model request goes through, failed proposals counted into one line, and the
manifest recording the model.

The check is run on the real embedded model (a 270M base model cannot write GEPA's JSON proposal); DSPy's DummyLM
stands in where the plumbing is under test (routing, counting GEPA's own failure reports)."""

import json
import logging
import subprocess
import sys
from types import SimpleNamespace

import dspy
import pytest
from dspy.utils.dummies import DummyLM
from mistakes import CLI, ENV, ROOT

from smelt.errors import SmeltError
from smelt.eval.judge import resolve_metric
from smelt.lm.prefill_adapter import PrefillChatAdapter
from smelt.optimizers.prompt import CompileSettings, check_proposer, compile_program
from smelt.optimizers.proposal_failures import GEPA_LOGGER, SIMBA_LOGGER, counting_failed_proposals
from smelt.programs.registry import get_task

TASK = get_task("doc_qa")
TRAIN = TASK.shipped_data().train[:6]
# Every output field the optimizers' proposal signatures ask for.
PROPOSAL = {"proposed_instruction": "Quote the sentence of the document that answers.",
            "proposed_prefix_for_output_field": "Answer:", "new_instruction": "Quote the sentence that answers.",
            "discussion": "d", "module_advice": '{"answer": "Quote the document."}', "answer": "Monday"}


def resolved(dummy, adapter, name: str):
    """A stand-in for smelt's ResolvedLM around a DummyLM named ``name``: its spec, LM and adapter."""
    dummy.model = name  # what DSPy (and the routing of prompt-model requests) knows a model by
    return SimpleNamespace(spec=SimpleNamespace(raw=name), lm=dummy, adapter=adapter,
                           context=lambda: dspy.context(lm=dummy, adapter=adapter))


def program_model():
    """The program's model as in-process models are: PrefillChatAdapter, no JSON fallback; it answers 'Monday'."""
    return resolved(DummyLM({"": {"answer": "Monday"}}), PrefillChatAdapter(), "program-dummy")


# ---------------------------------------------------------------------------- the check, on the real model


def test_gepa_refuses_the_embedded_model_before_any_run_directory(tmp_path):
    """The measured case: a 270M base model asked for GEPA's reflection. One call, one line naming the model and
    --prompt-lm, no traceback, and neither a baseline nor a run directory spent on it."""
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, str(CLI), "compile", "doc_qa", "--optimizer", "gepa", "--max-train", "2", "--max-dev", "1",
         "--max-test", "1", "--latency-sample", "0", "--runs-root", str(runs)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines[-5:]
    for fragment in ("--optimizer gepa", "gemma-3-270m (the program's model)", "pass --prompt-lm SPEC",
                     "cannot write the instructions"):
        assert fragment in errors[0], errors[0]
    assert not any(runs.rglob("manifest.json")), "refused before the run directory is made"


# ---------------------------------------------------------------------------- the check and routing (plumbing)


def test_check_refuses_for_gepa_and_warns_for_mipro_when_proposals_are_unreadable():
    """A prompt model whose answers are not the proposal's format: gepa stops (SmeltError naming --prompt-lm),
    mipro warns once and goes on."""
    program = TASK.program()
    mute = resolved(DummyLM({"": {"answer": "Monday"}}), dspy.ChatAdapter(use_json_adapter_fallback=False), "mute")
    with pytest.raises(SmeltError, match=r"--optimizer gepa: the prompt model --prompt-lm mute cannot write"):
        check_proposer("gepa", program, TRAIN, lm=program_model(), prompt_lm=mute)
    said = []
    check_proposer("mipro", program, TRAIN, lm=program_model(), prompt_lm=mute, log=said.append)
    assert len(said) == 1 and said[0].startswith("[smelt] warning: --optimizer mipro: the prompt model "
                                                 "--prompt-lm mute cannot write") and "goes on with" in said[0]


def test_prompt_model_requests_go_through_its_own_adapter():
    """DSPy's optimizers switch only the LM for their prompt model: smelt formats its requests with the prompt model's
    own adapter (here JSON), not the program's (an in-process model's prefilled prompt)."""
    program = TASK.program()
    prompt_model = DummyLM({"": PROPOSAL}, adapter=dspy.JSONAdapter())
    said = []
    check_proposer("mipro", program, TRAIN, lm=program_model(), log=said.append,
                   prompt_lm=resolved(prompt_model, dspy.JSONAdapter(), "prompt-dummy"))
    request = prompt_model.history[-1]["messages"]
    assert said == [] and request[-1]["role"] == "user" and "JSON" in request[0]["content"]
    # Without a prompt model of its own, the program's model proposes through the program's adapter: the prefill.
    alone = program_model()
    check_proposer("mipro", program, TRAIN, lm=alone, log=said.append)
    prefill = {"role": "assistant", "content": "[[ ## proposed_instruction ## ]]\n"}
    assert alone.lm.history[-1]["messages"][-1] == prefill


def test_prompt_lm_is_refused_with_an_optimizer_that_writes_no_instructions(tmp_path):
    result = subprocess.run([sys.executable, str(CLI), "compile", "doc_qa", "--optimizer", "bootstrap", "--prompt-lm",
                             "gemma-3-270m", "--runs-root", str(tmp_path)],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --prompt-lm gemma-3-270m: --optimizer bootstrap writes no instructions, so it has no prompt model; "
        "drop --prompt-lm, or use an optimizer that writes them (mipro, copro, simba, gepa)"]


@pytest.mark.parametrize(("args", "line"), [
    (["--prompt-lm", "gemma-3-270m", "--trials", "1"],
     "error: --prompt-lm gemma-3-270m: the space draws no optimizer that writes instructions (none, labeled, "
     "bootstrap); add mipro, copro, simba or gepa to its optimizer entry (--space FILE), or drop --prompt-lm"),
    (["--stage", "distill", "--student", "gemma-3-270m", "--prompt-lm", "gemma-3-270m"],
     "error: --prompt-lm gemma-3-270m: the prompt model writes a compile stage's instructions; drop it with --stage "
     "distill"),
])
def test_sweep_refuses_a_prompt_lm_it_would_not_use(tmp_path, args, line):
    """The embedded model's default space draws no optimizer that writes instructions; a distill stage has none."""
    result = subprocess.run([sys.executable, str(CLI), "sweep", "doc_qa", *args, "--runs-root", str(tmp_path)],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [line], result.stderr[-2000:]
    assert not any(tmp_path.rglob("manifest.json"))


# ---------------------------------------------------------------------------- failed proposals counted


def test_gepa_failed_reflections_become_one_counted_line(capfd):
    """GEPA itself, run past the check on a prompt model that never answers in JSON: its failure reports (a
    traceback each, on dspy.teleprompt.gepa.gepa) are counted, not printed, and said once at the end."""
    mute = resolved(DummyLM({"": {"answer": "Monday"}}), PrefillChatAdapter(), "mute")
    said, tally = [], SimpleNamespace(asked=0, failed=0, counted=False)
    compile_program(TASK.program(), "gepa", trainset=TRAIN, metric=resolve_metric("f1", TASK), lm=program_model(),
                    prompt_lm=mute, settings=CompileSettings(threads=2), log=said.append, tally=tally, checked=True)
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out
    assert "reflection failed" not in printed.err  # GEPA's own per-failure lines are gone too
    assert tally.counted and tally.asked > 0 and tally.failed == tally.asked
    assert said == [f"[smelt] gepa: reflection failed {tally.failed} of {tally.asked} on the prompt model "
                    "--prompt-lm mute; pass --prompt-lm SPEC with a stronger model"]
    assert not logging.getLogger(GEPA_LOGGER).filters, "the filter is gone once the compile is over"


def test_simba_failed_rules_are_counted_and_other_records_pass():
    """SIMBA's reports as it logs them: a failed rule is counted and dropped; a failed demo strategy and every other
    record still reach DSPy's handler."""
    logger, seen = logging.getLogger(SIMBA_LOGGER), []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    try:
        with counting_failed_proposals("simba") as tally:
            logger.info("Batch 1: Invoking strategy: append_a_rule")
            logger.error("Strategy failed with error: Adapter JSONAdapter failed to parse the LM response.")
            logger.info("Batch 1: Invoking strategy: append_a_demo_, having dropped 1 demos per predictor")
            logger.error("Strategy failed with error: list index out of range")
            logger.info("Batch 2: Invoking strategy: append_a_rule")
        logger.error("Strategy failed with error: after the compile")
    finally:
        logger.removeHandler(handler)
    assert (tally.asked, tally.failed) == (2, 1)
    assert seen == ["Batch 1: Invoking strategy: append_a_rule",
                    "Batch 1: Invoking strategy: append_a_demo_, having dropped 1 demos per predictor",
                    "Strategy failed with error: list index out of range", "Batch 2: Invoking strategy: append_a_rule",
                    "Strategy failed with error: after the compile"]


# ---------------------------------------------------------------------------- the manifest


def test_manifest_records_the_prompt_model_and_resume_reads_it_back(tmp_path):
    """A real compile with --prompt-lm (simba on the embedded model, which cannot write SIMBA's advice: a warning,
    and simba goes on): the manifest records the spec (options.prompt_lm, models.prompt), summary.json and
    report.md the proposals; --resume of the run takes the prompt model back, and refuses another."""
    from smelt.commands.compile import CompileOptions
    from smelt.commands.resume import resumed_options

    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, str(CLI), "compile", "doc_qa", "--optimizer", "simba", "--prompt-lm", "gemma-3-270m",
         "--max-train", "2", "--max-dev", "0", "--max-test", "1", "--latency-sample", "0", "--runs-root", str(runs)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "[smelt] warning: --optimizer simba: the prompt model --prompt-lm gemma-3-270m cannot write" in result.stderr
    run_dir = next(runs.glob("doc_qa/*-compile"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["options"]["prompt_lm"] == "gemma-3-270m"
    assert manifest["models"]["prompt"]["spec"] == "gemma-3-270m"
    summary = json.loads((run_dir / "summary.json").read_text())
    proposals = summary["proposals"]
    assert summary["prompt_lm"] == "gemma-3-270m" and 0 <= proposals["failed"] <= proposals["asked"]
    assert f"Prompt model gemma-3-270m: {proposals['failed']} of {proposals['asked']} proposals failed." in (
        run_dir / "report.md").read_text()
    (run_dir / "summary.json").unlink()  # as if interrupted: --resume continues it
    resumed = resumed_options(CompileOptions(resume=str(run_dir)), "compile", given={})
    assert resumed.prompt_lm == "gemma-3-270m" and resumed.optimizer == "simba"
    with pytest.raises(SmeltError, match="--prompt-lm qwen2.5-7b contradicts the run, which was started with "
                                         "--prompt-lm gemma-3-270m"):
        resumed_options(CompileOptions(resume=str(run_dir), prompt_lm="qwen2.5-7b"), "compile",
                        given={"prompt_lm": "--prompt-lm"})
