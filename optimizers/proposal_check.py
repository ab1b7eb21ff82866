"""Before an optimizer that writes instructions starts: one call asking its prompt model for a proposal, through the
signature and adapter the optimizer itself uses. A model that cannot write one (a 270M base model asked for GEPA's
JSON, or one that only copies the instruction it was shown) is named at once, instead of after minutes of failed
proposals.

Each optimizer's ``Proposer`` (its entry in ``smelt.optimizers.prompt.OPTIMIZERS``) says what to do then:
``refuses`` when proposals are all the optimizer does (gepa, copro: it would end where it started, or stop at the
first proposal), else a warning and the optimizer goes on with what it does besides (mipro: demo sets, the
program's own instruction among the candidates; simba: demos).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from smelt.errors import SmeltError, describe_exception
from smelt.redaction import redact_text

_INPUT_CHARS = 400  # each input of the example shown to the prompt model: enough to see the task, quick to read


@dataclass(frozen=True)
class Proposer:
    """How an optimizer asks its prompt model for instructions."""

    probe: Callable[..., str]  # (program, example) -> the proposal: one call to DSPy's LM; raises when unreadable
    refuses: bool  # a prompt model that cannot propose stops the run (else a warning)
    without: str = ""  # what the optimizer still does without proposals, for the warning
    failures: str = "proposals"  # what a failed proposal is called in the counted line ("reflection")


def prompt_model_named(lm, prompt_lm=None) -> str:
    """The prompt model as the user named it: ``--prompt-lm X``, or the program's own model ``lm``."""
    return f"--prompt-lm {prompt_lm.spec.raw}" if prompt_lm is not None else f"{lm.spec.raw} (the program's model)"


def check_prompt_model(optimizer: str, proposer: Proposer, program, trainset: list, lm, prompt_lm=None, *,
                       log: Callable[[str], None]) -> bool:
    """Ask the prompt model (``prompt_lm``, else the program's ``lm``) for one proposal as ``optimizer`` would. One
    that cannot write it stops the run (SmeltError) or, where ``proposer`` goes on without, is warned about in one
    line. A failed call (a server that is down, a wrong key) always stops it. Returns whether it could."""
    import dspy
    import pydantic
    from dspy.utils.exceptions import AdapterParseError

    try:
        with dspy.context(lm=(prompt_lm or lm).lm):
            proposal = proposer.probe(program, trainset[0])
        problem = _not_a_proposal(proposal, _instruction(program))
    except (AdapterParseError, pydantic.ValidationError, ValueError) as exc:
        problem = unreadable(exc)
    except Exception as exc:  # noqa: BLE001 - any other failure is the call's (server, key), said in one line
        detail, named = " ".join(redact_text(describe_exception(exc)).split()), prompt_model_named(lm, prompt_lm)
        raise SmeltError(f"--optimizer {optimizer}: the call to the prompt model {named} failed: {detail}; check the "
                         "model spec, --api-base, the API key and that the server is up") from None
    if problem is None:
        return True
    named = prompt_model_named(lm, prompt_lm)
    stronger = "pass --prompt-lm SPEC with a stronger model (an instruct model: qwen2.5-7b, or a server model)"
    if proposer.refuses:
        raise SmeltError(f"--optimizer {optimizer}: the prompt model {named} cannot write the instructions "
                         f"{optimizer} proposes ({problem}); {stronger}, or use --optimizer mipro or bootstrap")
    log(f"[smelt] warning: --optimizer {optimizer}: the prompt model {named} cannot write the instructions it "
        f"proposes ({problem}); {optimizer} goes on with {proposer.without}; {stronger}")
    return False


def _not_a_proposal(proposal: str | None, instruction: str) -> str | None:
    """What makes a readable answer no proposal: empty, or the instruction it was given, repeated (the 270M base
    model copies its input)."""
    words = " ".join((proposal or "").split())
    if not words:
        return "it wrote an empty instruction"
    if words in " ".join(instruction.split()):
        return "it only repeated the instruction it was given"
    return None


def unreadable(exc: Exception) -> str:
    """Why a proposal was unreadable: the error's first line, without the model's whole answer (AdapterParseError
    quotes it further down)."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " ".join((lines[0] if lines else type(exc).__name__).split())[:160]


def _instruction(program) -> str:
    return program.predictors()[0].signature.instructions


def _inputs(example) -> dict[str, str]:
    return {name: str(value)[:_INPUT_CHARS] for name, value in example.inputs().items()}


def _labels(example) -> dict[str, str]:
    return {name: str(value) for name, value in example.labels().items()}


def probe_gepa(program, example) -> str:
    """GEPA's own instruction proposer (a JSON answer through JSONAdapter) on one example with feedback."""
    from dspy.teleprompt.gepa.instruction_proposal import InstructionProposer

    reflective = [{"Inputs": _inputs(example), "Generated Outputs": {name: "" for name in _labels(example)},
                   "Feedback": f"The answer was empty; the reference is {_labels(example)}."}]
    texts = InstructionProposer()(candidate={"program": _instruction(program)},
                                  reflective_dataset={"program": reflective}, components_to_update=["program"])
    return texts.get("program", "")


def probe_mipro(program, example) -> str:
    """MIPROv2's instruction signature (GroundedProposer), with one example as the task's demo and a tip."""
    from dspy.propose.grounded_proposer import TIPS, generate_instruction_class

    propose = generate_instruction_class(use_dataset_summary=False, program_aware=False, use_task_demos=True,
                                         use_instruct_history=False, use_tip=True)
    demo = "\n".join(f"{name}: {value}" for name, value in {**_inputs(example), **_labels(example)}.items())
    return propose(task_demos=demo, basic_instruction=_instruction(program), tip=TIPS["simple"]).proposed_instruction


def probe_copro(program, example) -> str:
    """COPRO's first proposal: a new instruction and output prefix from the program's instruction."""
    import dspy
    from dspy.teleprompt.copro_optimizer import BasicGenerateInstruction

    proposal = dspy.Predict(BasicGenerateInstruction)(basic_instruction=_instruction(program))
    return proposal.proposed_instruction if proposal.proposed_prefix_for_output_field is not None else ""


def probe_simba(program, example) -> str:
    """SIMBA's rule: advice per module (a dict) from a better and a worse run on one example."""
    import dspy
    from dspy.teleprompt.simba_utils import OfferFeedback, inspect_modules

    names = [name for name, _ in program.named_predictors()]
    inputs, labels = _inputs(example), _labels(example)
    try:
        code = inspect.getsource(type(program))
    except (OSError, TypeError):
        code = type(program).__name__
    advice = dspy.Predict(OfferFeedback)(
        program_code=code, modules_defn=inspect_modules(program), program_inputs=str(inputs),
        oracle_metadata=str(labels),
        worse_program_trajectory=str([{"module_name": names[0], "inputs": inputs, "outputs": {}}]),
        worse_program_outputs="{}", worse_reward_value=0.0, worse_reward_info="",
        better_program_trajectory=str([{"module_name": names[0], "inputs": inputs, "outputs": labels}]),
        better_program_outputs=str(labels), better_reward_value=1.0, better_reward_info="", module_names=names,
    ).module_advice
    if not isinstance(advice, dict) or not any(name in advice for name in names):
        raise ValueError(f"its advice names none of the modules ({', '.join(names)})")
    return "\n".join(str(advice[name]) for name in names if name in advice)
